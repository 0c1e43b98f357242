#!/bin/bash
# GPU checks for issues 3 (CUDA execution provider) and 4 (NVDEC): one prepared script.
set -u
G=/tmp/g; mkdir -p $G; PROV=$(cat .gpu/provsize); mv .gpu/part.* $G/; cd $G || exit 1; ls -la
cat part.* > all && head -c $PROV all | xz -d > prov.so && tail -c +$((PROV+1)) all | tar -xJ || { echo "reassembly failed"; ls -la; exit 1; }
mv prov.so ortlib/libonnxruntime_providers_cuda.so; rm -f all part.*
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH=$G/ortlib:$NV/cu13/lib:$NV/cudnn/lib:${LD_LIBRARY_PATH:-}
export MEDLEY_HOME=$G/home MEDLEY_ORT_LIB=$G/ortlib/libonnxruntime.so.1.31.1
nvidia-smi -L; nproc
ldd ortlib/libonnxruntime_providers_cuda.so | grep 'not found'
echo "== CUDA execution provider"
timeout 200 bin/model_bench --device cuda --batches 1,8,32,128 --seconds 1 --bound efficientnet-lite0 efficientnet-lite0-fp16 2>&1 | tee $OUT/cuda.txt
timeout 100 bin/model_bench --device cuda --batches 1,32 --seconds 1 musicnn-mtt tiny-clip tiny-clap 2>&1 | tee $OUT/cuda2.txt
echo "== CPU, same machine ($(nproc) cores)"
timeout 60 bin/model_bench --device cpu --batches 1,32 --seconds 1 efficientnet-lite0 2>&1 | tee $OUT/cpu.txt
echo "== auto"
timeout 60 bin/model_bench --device auto --batches 8 --seconds 0.5 tiny-clip 2>&1 | tee $OUT/auto.txt
echo "== NVDEC"
export LD_LIBRARY_PATH=$G/ff:$LD_LIBRARY_PATH
ls /usr/local/nvidia/lib64 2>/dev/null | grep -i -E 'cuvid|libcuda' ; ldconfig -p | grep -i -E 'cuvid|libcuda.so' | head
for s in fps:1 keyframes; do for hw in none cuda; do for th in 2 16; do
  echo -n "$s $hw threads=$th: "; timeout 120 bin/decode_bench media/bbb120.mp4 $s $th 224 - $hw 2>&1 | tail -2
done; done; done | tee $OUT/nvdec.txt
