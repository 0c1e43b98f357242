#!/bin/bash
# Issue 12's GPU checks in one go, on a lent GPU machine that reaches no registry. The payload
# `xtask/gpu/pack.sh` made (ONNX Runtime's GPU build, the medley binaries and the FFmpeg
# libraries they link, the default pipeline's models, the sample media and the whole of Big
# Buck Bunny) was carried in parts to /tmp/g. This reassembles it, lays out MEDLEY_HOME as
# `cargo xtask setup --gpu` does (the CUDA and cuDNN wheels are the machine's PyTorch ones), and
# runs, writing to $OUT: `medley doctor`; the image encoder on CUDA (host arrays as the pipeline
# passes them, and I/O binding) next to PyTorch fp16/fp32 on the same architecture; the default
# pipeline over the media with --device cuda --hwaccel cuda, then on the CPUs; and a row-by-row
# comparison of the two tables.
# (A dry run elsewhere: G=/tmp/gx MEDIA=small/dir PY=path/to/python bash xtask/gpu/check.sh.)
set -u
G=${G:-/tmp/g}; OUT=${OUT:-$G/out}; REPO=$(pwd); mkdir -p $G $OUT
for d in .gpu*; do [ -d "$d" ] && mv "$d"/part.* $G/ 2>/dev/null; done
cd $G || exit 1
S=$G/stage
if [ ! -d $S ]; then
  cat part.* | tar -x && rm -f part.* || { echo "payload incomplete"; ls -la; exit 1; }
  mkdir -p $S && gzip -d < bundle.tar.gz | tar -x -C $S && xz -d -T0 < prov.so.xz > $S/prov.so || exit 1
  rm -f bundle.tar.gz prov.so.xz
fi
H=$G/home; NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
mkdir -p $H/onnxruntime-gpu $H/onnxruntime
ln -sfn $S/models $H/models
cp -f $S/ortlib/libonnxruntime.so $S/ortlib/libonnxruntime_providers_shared.so $H/onnxruntime-gpu/
mv -f $S/prov.so $H/onnxruntime-gpu/libonnxruntime_providers_cuda.so 2>/dev/null
printf '%s\n' $NV/cu13/lib $NV/cudnn/lib > $H/onnxruntime-gpu/cuda-lib-dirs
# CPU runs here use the same library (it has the CPU provider too): one build, two devices.
ln -sf $H/onnxruntime-gpu/libonnxruntime.so $H/onnxruntime/libonnxruntime.so
# Only the carried FFmpeg libraries: ONNX Runtime and CUDA are found by medley itself.
export MEDLEY_HOME=$H LD_LIBRARY_PATH=$S/ff
M=$S/bin/medley; MEDIA=${MEDIA:-$S/media}; PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt; nproc | tee -a $OUT/gpu.txt

echo "== doctor"
$M doctor --json > $OUT/doctor.json 2>&1; $PY -c "
import json; d=json.load(open('$OUT/doctor.json')); o=d['onnx_runtime']
print(o.get('version'), o.get('execution_providers'), d['device_auto'])" 2>&1 | tee $OUT/doctor.txt
if ! grep -q "'device': 'cuda'" $OUT/doctor.txt; then
  echo "CUDA not chosen without library paths; retrying with LD_LIBRARY_PATH" | tee -a $OUT/doctor.txt
  export LD_LIBRARY_PATH=$H/onnxruntime-gpu:$NV/cu13/lib:$NV/cudnn/lib:$LD_LIBRARY_PATH
  $M doctor --json > $OUT/doctor2.json 2>&1; grep -A3 device_auto $OUT/doctor2.json | tee -a $OUT/doctor.txt
fi

echo "== image encoder: medley (CUDA; the fp16 graph, as the pipeline loads it) and PyTorch"
for v in "" MEDLEY_CUDA_NHWC=0 MEDLEY_CUDNN_CONV_SEARCH=heuristic; do
  echo "variant: ${v:-defaults}" | tee -a $OUT/image_bench.txt
  env $v timeout 60 $S/bin/model_bench --device cuda --batches 1,32,128,256 --seconds 1 --bound efficientnet-lite0 2>&1 | tee -a $OUT/image_bench.txt
done
timeout 90 $PY $REPO/xtask/gpu/torch_bench.py 32 128 256 2>&1 | grep -v Warning | tee -a $OUT/image_bench.txt

run_index() { # name device hwaccel
  rm -rf $G/$1.lance
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > $OUT/mem_$1.txt 2>/dev/null & P=$!
  local t0=$SECONDS
  # SIGTERM at the limit: medley commits what is finished and exits (what a scheduler sends too).
  timeout -k 20 ${4:-300} $M index --db $G/$1.lance --device $2 --hwaccel $3 --json $MEDIA > $OUT/index_$1.json 2> $OUT/index_$1.err
  echo "$1: exit $? in $((SECONDS - t0)) s" | tee -a $OUT/summary.txt
  kill $P 2>/dev/null
  $PY -c "
import json; s=json.load(open('$OUT/index_$1.json')); m=[int(x) for x in open('$OUT/mem_$1.txt') if x.strip()]
print('$1', {k: s.get(k) for k in ('indexed','failed','media_seconds','wall_seconds','device','hwaccel')},
      'x realtime %.1f' % (s['media_seconds']/s['wall_seconds']), 'gpu MiB peak %s (idle %s)' % (max(m, default=None), min(m, default=None)),
      'stages', s.get('stage_seconds'))" 2>&1 | tee -a $OUT/summary.txt
  tail -3 $OUT/index_$1.err
}
echo "== default pipeline on CUDA (NVDEC), then on the CPUs"
run_index gpu cuda cuda 240
run_index cpu cpu none 330

echo "== the same rows?"
$M export --db $G/cpu.lance --table media $G/cpu.parquet && $M export --db $G/gpu.lance --table media $G/gpu.parquet &&
  $PY $REPO/xtask/gpu/compare_runs.py $G/cpu.parquet $G/gpu.parquet 2>&1 | tee $OUT/compare.json
echo "== done"; cat $OUT/summary.txt
