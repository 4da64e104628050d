set -e
cd /work/wt/margin
J=src/autotag/taxonomy/consumer_fitted.json
cp $J /tmp/margin/fitted.orig.json
run() { HF_HUB_OFFLINE=1 PYTHONPATH=src nice -n 5 /work/main/.venv/bin/python -c "from autotag.cli import app; app()" eval --dataset realphotos:.cache/realphotos --split fit; }
echo "== before"; run
for s in "0.4 3" "0.3 5"; do set -- $s
/work/main/.venv/bin/python -c "import json;d=json.load(open('/tmp/margin/fitted.orig.json'));d['leader_min']=$1;d['leader_ratio']=$2;json.dump(d,open('$J','w'),indent=1,sort_keys=True)"
echo "== leader_min $1 leader_ratio $2"; run
done
cp /tmp/margin/fitted.orig.json $J
