#!/bin/bash
# Make the payload xtask/gpu/check.sh runs on a lent GPU machine that reaches no registry, from
# this machine's cache and build (`cargo xtask build` first), split to fit the 64 MiB a call
# carries. Writes $W/.gpu1 ... .gpuN (one part each): carry them one per call (each call's
# command moves its part to /tmp/g), the last one with `bash xtask/gpu/check.sh`.
#
# usage: xtask/gpu/pack.sh REPO_ROOT   (parts go to REPO_ROOT/.gpuN, which .git/info/exclude ignores)
set -euo pipefail
R=$(cd "${1:-.}" && pwd); H=${MEDLEY_HOME:-$HOME/.cache/medley}; T=${CARGO_TARGET_DIR:-$H/target}
W=$H/gpu-payload; mkdir -p $W; S=$W/stage; rm -rf $S; mkdir -p $S/bin $S/ortlib $S/ff $S/models $S/media
ORT=1.31.1
# ONNX Runtime's GPU build, from the PyPI wheel (kept in the cache).
if [ ! -f $W/capi/libonnxruntime_providers_cuda.so ]; then
  $H/venv/bin/pip download -q --no-deps --only-binary=:all: onnxruntime-gpu==$ORT -d $W/wheel
  unzip -o -q -j $W/wheel/onnxruntime_gpu-$ORT-*.whl 'onnxruntime/capi/lib*.so*' -d $W/capi
fi
[ -f $W/prov.so.xz ] || xz -6 -T2 -c $W/capi/libonnxruntime_providers_cuda.so > $W/prov.so.xz
cp $W/capi/libonnxruntime.so.$ORT $S/ortlib/libonnxruntime.so
cp $W/capi/libonnxruntime_providers_shared.so $S/ortlib/
for b in debug/medley debug/examples/model_bench; do strip -o $S/bin/$(basename $b) $T/$b; done
# The FFmpeg libraries (and theirs) medley links, without the C and C++ runtimes the machine has.
ldd $T/debug/medley | awk '/=> \//{print $3}' | grep -v -E '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' |
  xargs -I{} cp -L {} $S/ff/
# The default pipeline's models.
for m in efficientnet-lite0 aisfx minilm-l6 yamnet pp-ocrv4 musicnn-mtt whisper-base silero-vad; do
  cp -r $H/models/$m $S/models/
done
cp -r $H/media/* $S/media/
( cd $S && tar -cf - . ) | gzip -1 > $W/bundle.tar.gz
rm -rf $R/.gpu[0-9]* $W/parts; mkdir -p $W/parts
( cd $W && tar -cf - prov.so.xz bundle.tar.gz ) | split -b 62000000 -d - $W/parts/part.
i=0; for p in $W/parts/part.*; do i=$((i+1)); mkdir -p $R/.gpu$i; mv $p $R/.gpu$i/; done
grep -qx '/.gpu\*' $R/.git/info/exclude 2>/dev/null || echo '/.gpu*' >> $R/.git/info/exclude
du -sh $W/prov.so.xz $W/bundle.tar.gz; echo "$i parts in $R/.gpu1 .. .gpu$i"
