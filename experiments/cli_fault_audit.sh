#!/bin/bash
# Bad inputs and faults against the jaxmac CLI, as a new user meets them: each case must exit
# non-zero (or 0 where marked ok) in one line, never with a traceback. Prints a line per case and
# "N cases, K bad"; exits 1 if any is bad. About 3 minutes on 2 CPU cores.
cd "$(dirname "$0")/.." && export HF_HUB_OFFLINE=1; J=${JAXMAC:-.venv/bin/jaxmac}; T=$(mktemp -d)
SMALL="--algo mappo --hidden 16 --ues 1-2 --episodes 8 --updates 2 --chunk 1 --eval-ues 1 --eval-episodes 4"
$J train $SMALL --out $T/D >/dev/null 2>&1 || echo "base run failed"
cp -r $T/D $T/unk; python3 - <<P
import json; p="$T/unk/config.json"; c=json.load(open(p)); c["bogus"]=1; json.dump(c,open(p,"w"))
P
cp -r $T/D $T/badjson; echo '{"algo": ' > $T/badjson/config.json
cp -r $T/D $T/dmg; find $T/dmg/checkpoints/2 -type f -name '*' | grep -v metadata | head -3 | xargs -I{} sh -c 'head -c 10 {} > {}.x; mv {}.x {}'
cp -r $T/D $T/torn; printf '{"update": 3, "lo' >> $T/torn/metrics.jsonl
cp -r $T/D $T/lr; cp -r $T/D $T/ep; cp -r $T/D $T/lock
touch $T/file; mkdir -p $T/adir
n=0; bad=0
check() {  # expect(ok|fail) description args...
  expect=$1; shift; desc=$1; shift; n=$((n+1))
  out=$($J "$@" 2>&1); rc=$?
  tb=$(echo "$out" | grep -c "Traceback")
  last=$(echo "$out" | grep -v '^\s*$' | tail -1 | cut -c1-170)
  verdict=good
  if [ "$expect" = fail ] && [ $rc -eq 0 ]; then verdict=BAD; fi
  if [ "$expect" = ok ] && [ $rc -ne 0 ]; then verdict=BAD; fi
  if [ $tb -gt 0 ]; then verdict=BAD; fi
  [ $verdict = BAD ] && bad=$((bad+1))
  printf '%-4s %-5s rc=%d  %-38s %s\n' "$verdict" "$expect" $rc "$desc" "$last"
}
check fail "train --out a file" train $SMALL --out $T/file
check fail "train --out under a file" train $SMALL --out $T/file/r
check fail "train into an existing run" train $SMALL --out $T/D
check fail "resume a typo'd dir" train --resume --out $T/nope
check fail "--ues 1-2000000" train $SMALL --ues 1-2000000 --out $T/x1
check fail "--eval-ues 99" train $SMALL --eval-ues 99 --out $T/x2
check fail "--lr -1" train $SMALL --lr -1 --out $T/x3
check fail "--algo foo" train --algo foo --out $T/x4
check fail "--stop-if loss>nan" train $SMALL --stop-if 'loss>nan' --out $T/x5
check fail "--stop-if foo>1" train $SMALL --stop-if 'foo>1' --out $T/x6
check fail "--p-arrival 2" train $SMALL --p-arrival 2 --out $T/x7
check fail "--reward foo" train $SMALL --reward foo --out $T/x8
check fail "--model /nonexistent" train --algo llm4mac --model /nonexistent --out $T/x9
check fail "sweep foo=1" sweep $SMALL --sweep foo=1 --out $T/x10
check fail "llm-pt --lora-rank -1" train --algo llm-pt --lora-rank -1 --out $T/x12
check fail "llm-pt --answer-len 2" train --algo llm-pt --answer-len 2 --out $T/x13
check fail "llm-pt --heldout-percent 100" train --algo llm-pt --heldout-percent 100 --out $T/x14
printf 'lrr: 1\n' > $T/badkey.yaml; printf 'algo: [1, 2\n' > $T/notyaml.yaml
check fail "--config with an unknown key" train --config $T/badkey.yaml --out $T/x15
check fail "--config that is not YAML" train --config $T/notyaml.yaml --out $T/x16
check fail "--config missing" train --config $T/nope.yaml --out $T/x17
check fail "--model-shards 3 on 1 device" train $SMALL --model-shards 3 --out $T/x18
check fail "--dtype float16" train --algo llm4mac --dtype float16 --out $T/x19
check fail "--num-processes without coordinator" train $SMALL --num-processes 2 --process-id 0 --out $T/x20
check fail "foreign option --tau for mappo" train $SMALL --tau 0.1 --out $T/x11
check fail "resume: unknown config key" train --resume --out $T/unk
check fail "resume: config not JSON" train --resume --out $T/badjson
check fail "resume: damaged newest ckpt" train --resume --updates 3 --out $T/dmg
check ok   "resume --previous-checkpoint" train --resume --updates 3 --previous-checkpoint --out $T/dmg
check ok   "resume: torn metrics line" train --resume --updates 3 --out $T/torn
check ok   "resume with --lr 1e-4" train --resume --updates 3 --lr 1e-4 --out $T/lr
check fail "resume with --episodes 16" train --resume --updates 3 --episodes 16 --out $T/ep
python3 -c "
import fcntl,time,sys; f=open('$T/lock/.lock','a+'); fcntl.flock(f,fcntl.LOCK_EX); time.sleep(60)" & LP=$!; sleep 1
check fail "resume while another writes" train --resume --updates 3 --out $T/lock
kill $LP
check fail "eval missing checkpoint dir" eval --checkpoint $T/nope
cp -r $T/D $T/nobest; rm -rf $T/nobest/best $T/nobest/best.json
check fail "eval --best without best" eval --checkpoint $T/nobest --best --ues 1 --episodes 2
check fail "eval --out a directory" eval --policy random --ues 1 --out $T/adir
check fail "eval --out under a file" eval --policy random --ues 1 --out $T/file/x.json
check fail "eval --policy foo" eval --policy foo --ues 1
check fail "eval --ues 0" eval --policy random --ues 0
check fail "eval --episodes 0" eval --policy random --ues 1 --episodes 0
check fail "eval ckpt with --max-ues 4" eval --checkpoint $T/D --max-ues 4 --ues 1 --episodes 2
check ok   "eval ckpt with --p-arrival 0.9" eval --checkpoint $T/D --p-arrival 0.9 --ues 1 --episodes 2 --out $T/e.json
check fail "eval ckpt damaged" eval --checkpoint $T/badjson --ues 1 --episodes 2
check fail "export a mappo run" export --checkpoint $T/D --out $T/t5
check fail "export into an existing directory" export --checkpoint $T/D --out $T/adir
check fail "export a missing run" export --checkpoint $T/nope --out $T/t5
mkdir -p $T/small
if mount -t tmpfs -o size=2m tmpfs $T/small 2>/dev/null; then  # a full disk (needs root)
  check fail "checkpoint on a full disk" train $SMALL --hidden 256 --updates 3 --out $T/small/r
  dd if=/dev/zero of=$T/small/filler bs=4k 2>/dev/null  # fills the disk
  check fail "eval --out on a full disk" eval --policy random --ues 1 --episodes 2000 --out $T/small/big.json
  umount $T/small
fi
rm -rf $T
echo "$n cases, $bad bad"
[ $bad -eq 0 ]
