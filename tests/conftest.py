import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
# in-process CLI calls must not fill the user's compilation cache (a test turns it on explicitly)
os.environ["JAXMAC_XLA_CACHE"] = "off"
