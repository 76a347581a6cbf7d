#!/bin/bash
# The GPU-machine runs of issues 11-14 as named parts, run as a background queue so that the GPU
# stays busy between calls (one GPU job at a time: two at once slowed each about 2.5×).
#
#   bash scripts/gpu_stay.sh list                   the parts, with their estimated minutes
#   bash scripts/gpu_stay.sh queue PART...          run the parts in order (each under a timeout)
#   bash scripts/gpu_stay.sh queue-on N PART...     the same on GPU N alone, where the machine has
#                                                   several (two queues on two GPUs run side by side)
#   bash scripts/gpu_stay.sh check                  on two GPUs: does each queue-on land on its own?
#   bash scripts/gpu_stay.sh watch SECONDS OUT      progress until the queues end or SECONDS pass,
#                                                   then pack the results into OUT (res.tgz, runs.tgz, weights)
# The machine goes back 30 s after a call ends: have the next call ready (a fresh machine has none
# of the carried folders, /tmp/work or the results, and the lease's time still counts).
# Within one lease (the repo with weights/ is 23 MB, .gpu 37, .gpu-data 26, node_modules 7 without
# playwright-core, which stays here: move node_modules/.deno/playwright-core@* and the
# node_modules/playwright-core link aside first; data/emoji 6; each call may carry 67 MB):
#   call 1, carry [".gpu-data", "node_modules", "data/emoji"]: bash .gpu-data/unpack.sh
#            (→ /tmp/fmnist; carried paths stay on the machine, so they need not travel again)
#   call 2, carry [".gpu"]:
#     mkdir -p /tmp/res && rm -rf /tmp/work && cp -a . /tmp/work && cd /tmp/work &&
#     source .gpu/prelude.sh &&
#     (setsid nohup bash scripts/gpu_stay.sh queue PART... >/tmp/res/queue.log 2>&1 </dev/null &);
#     bash scripts/gpu_stay.sh watch 560 $OUT
#   later calls: cd /tmp/work && bash scripts/gpu_stay.sh watch 560 $OUT
# On a machine of two GPUs: build the GPU-selection layer here (sh scripts/gpu_select/build.sh) and
# carry .gpu-select with .gpu in call 2; there run `bash scripts/gpu_stay.sh check` (each GPU's
# probe must show on that GPU alone), then start one queue-on 0 and one queue-on 1 instead of the
# queue. (Hiding the other GPU's /dev node in a mount namespace does not work: the driver's
# nvidia-modprobe makes it again, and both queues shared GPU 0.)
# A part's processes all end with it (timeout kills its process group): a test or task left running
# would share the GPU with the benchmarks after it and spoil their figures (it happened once).
# The machine has no network and the npm dev dependency playwright-core stays behind, so the copy's
# deno.json uses node_modules as carried ("manual"; "auto" would try to install playwright-core),
# and the suite runs without type checking (CI checks types) and without the browser test (no
# Chromium there).
#
# Done on 2026-11-30 (H200; figures in BENCHMARKS.md and weights/README.md): torch-s2-train,
# small-train, small-export, small-eval, s2-adamw, s2-eval-ours, s2-eval-torch (issue 12); later
# that day (figures in BENCHMARKS.md and README.md): bench-s, torch-s, bench-s256, torch-s256,
# matmul, bench-b, torch-b (issue 11), s2-muon, ckpt-s (issue 13); in the fourth session's stay
# (two GPUs): test, bench-s, torch-s (issue 11), refused-small, fit-small, ckpt-b (issue 13),
# vq-fmnist, vq-emoji, fm-*-fmnist, fm-*-emoji, vq-bench, b2-emoji (issue 14); in the fifth
# session's stay (two GPUs, figures in README.md): queue-on 0 vq-emoji-aug vq-emoji-aug-c64
# vq-emoji-aug-d8 fm-latent-emoji-best beside queue-on 1 vq-emoji-aug4 vq-emoji-aug-30k, then
# fm-latent-emoji-best again once vq-emoji-aug-30k had ended best (the first run moved aside).
# watch packs VQ-VAE runs with the logs (res.tgz) apart from the other runs (runs.tgz): one archive of
# that stay's runs was 17 MB, over the 16 MiB that comes back.
set -u
RES=${RES:-/tmp/res}
DATA=${GPU_DATA:-/tmp/fmnist}
FM="--dataset fashion-mnist --data $DATA"
mkdir -p "$RES"

# name: minutes (estimate, H200), timeout in seconds, what it is for.
PARTS="
torch-s2-train  2   300 issue 12: PyTorch S/2, 1,500 steps, bf16 (the comparison's other model)
small-train     5   420 issue 12: the shipped small weights (10,000 steps)
small-export    0.1 120 issue 12: export them in F16
small-eval      1.5 300 issue 12: score the F16 file with eval's defaults
s2-adamw        3   360 issues 12+13: S/2 f16 AdamW, 1,500 steps (equal to the f16 proof run)
s2-eval-ours    2.5 360 issue 12: score it (N 10,000, 25 steps)
s2-eval-torch   2.5 360 issue 12: score PyTorch's
probe           0.3 60  which GPU a WebGPU device lands on
test            3   420 issue 11: the suite on the GPU
bench-s         3   420 issue 11: our S/2 step, breakdown, memory, sampling (f32, f16)
torch-s         4   480 issue 11: PyTorch S/2 fp32, bf16, compiled fp32 and bf16
bench-s256      1   240 issue 11: our S/2 sampling at batch 256 (f32, f16)
torch-s256      1.5 300 issue 11: PyTorch's
matmul          2   300 issue 11: every GEMM shape, f32 and f16, beside PyTorch fp32 and bf16
bench-b         3   420 issue 11: B/2 32×32×3 step and sampling (f32, f16)
torch-b         2   360 issue 11: PyTorch B/2 fp32, bf16
ckpt-s          2   300 issue 13: S/2 step with activation checkpointing (f32, f16)
ckpt-b          3   420 issue 13: B/2 32×32×3 with activation checkpointing
s2-muon         4   420 issue 13: S/2 f16 Muon, 1,500 steps (against docs/results/muon-vs-adamw-adamw)
refused         1   240 issue 13: B/2 at 64×64 batch 256: refused, one line
fit-micro       9   600 issue 13: the same with --micro-batch-size 64 (resumable, 540 s a call)
fit-ckpt        9   600 issue 13: the same with --grad-checkpointing (resumable)
refused-small   0.2 120 issue 13: small/2 at 64×64 batch 640 (a 2.5 GiB binding): refused, one line
fit-small       5   360 issue 13: the same in 2 micro-batches of 320 (resumable, 255 s a call)
vq-bench        2   300 issue 14: VQ-VAE step, ours and PyTorch's (32×32×3, batch 128)
vq-fmnist       4   420 issue 14: VQ-VAE on Fashion-MNIST (PSNR on t10k), 240 s
vq-emoji        2   420 issue 14: VQ-VAE on emoji 32×32 (needs data/emoji carried), 240 s
vq-emoji-aug    2   420 issue 14: the same with flips and shifts of up to 2 pixels
vq-emoji-aug4   2   420 issue 14: the same with shifts of up to 4 pixels
vq-emoji-aug-c64 2  420 issue 14: flips, shifts of 2, half the width (64 channels)
vq-emoji-aug-30k 6  600 issue 14: flips, shifts of 2, 30,000 steps, cosine learning rate
vq-emoji-aug-d8 2   420 issue 14: flips, shifts of 2, code dimension 8 (a wider bottleneck)
fm-latent-fmnist 3  300 issue 14: S/2-latent DiT on vq-fmnist's latents, 150 s
fm-pixel-fmnist 3   300 issue 14: S/2 pixel DiT on Fashion-MNIST, 150 s
fm-latent-emoji 3   300 issue 14: S latent DiT on vq-emoji's latents, 150 s
fm-latent-emoji-aug 3 300 issue 14: the same on vq-emoji-aug's latents (EMOJI_VQ=run: another's)
fm-latent-emoji-best 3 300 issue 14: the same on the finished emoji VQ-VAE of best held-out PSNR
fm-pixel-emoji  3   300 issue 14: S/2 pixel DiT on emoji, 150 s
b2-emoji        5   420 issue 14: the seed's B/2 32×32×3 pixel config on emoji, 240 s
"

run_part() {
  local T="--time-limit"
  case "$1" in
  torch-s2-train)
    python3 scripts/pytorch_train.py --preset S --steps 1500 --lr 3e-4 --warmup 200 \
      --ema-decay 0.999 --bf16 --seed 0 --data "$DATA" --out /tmp/pytorch-S-bf16 --log-every 100 ;;
  small-train)
    deno task train --preset small $FM --batch-size 128 --steps 10000 --lr 3e-4 --warmup 500 \
      --ema-decay 0.999 --log-every 250 --sample-every 2500 --ckpt-every 5000 $T 300 \
      --name fmnist-small ;;
  small-export)
    deno task export-weights --checkpoint runs/fmnist-small \
      --out "$RES/fashion-mnist-small.safetensors" ;;
  small-eval)
    deno task eval --checkpoint "$RES/fashion-mnist-small.safetensors" --data "$DATA" \
      --json "$RES/eval_small.json" ;;
  s2-adamw | s2-muon) FMNIST=$DATA sh scripts/scale_gpu_runs.sh "muon-${1#s2-}" ;;
  s2-eval-ours | s2-eval-torch)
    local ck=runs/muon-vs-adamw-adamw
    [ "$1" = s2-eval-torch ] && ck=/tmp/pytorch-S-bf16
    deno task eval --checkpoint $ck --data "$DATA" --num-samples 10000 --num-steps 25 \
      --json "$RES/eval_${1#s2-eval-}.json" ;;
  probe) # holds 1 GiB on a WebGPU device for 12 s (nvidia-smi shows which GPU it is on)
    deno eval 'const a = await navigator.gpu.requestAdapter(), d = await a.requestDevice();
      const bufs = [0, 1, 2, 3].map(() => d.createBuffer({ size: 2 ** 28, usage: GPUBufferUsage.STORAGE }));
      console.log("adapter", a.info.description, bufs.length, "x 256 MiB");
      await new Promise((r) => setTimeout(r, 12000));' ;;
  test)
    # One deno test a file, 8 at a time, each under its own timeout: a file that hangs (one did on
    # 2026-11-30, beside a GPU-masking experiment) costs its own tests only and is named.
    mkdir -p "$RES/test"
    export NO_COLOR=1 # plain summary lines to read back
    ls tests/*_test.ts | grep -v web_test | xargs -P 8 -I{} sh -c \
      'f=$(basename {} .ts); timeout -k 5 200 deno test -A --no-check {} >"$RES/test/$f.log" 2>&1
       echo "$f rc=$? $(grep -E "^(ok|FAILED) \|" "$RES/test/$f.log" | tail -1)"'
    grep -hE '^(ok|FAILED) \|' "$RES"/test/*.log |
      awk '{ for (i = 2; i <= NF; i++) { if ($i == "passed") p += $(i - 1); if ($i == "failed") f += $(i - 1)
             if ($i ~ /^ignored/) g += $(i - 1) } } END { print "total:", p, "passed,", f, "failed,", g, "ignored" }'
    ;;
  bench-s) deno task bench --precision f32,f16 --skip linear ;;
  torch-s)
    python3 scripts/pytorch_bench.py --preset S --batch-size 128 --no-matmul \
      --modes fp32,bf16,compiled-fp32,compiled-bf16 --json-out "$RES/torch_s.json" ;;
  bench-s256) deno task bench --precision f32,f16 --batch-size 256 --skip step,linear,breakdown ;;
  torch-s256)
    python3 scripts/pytorch_bench.py --preset S --batch-size 256 --no-matmul --modes fp32,bf16 \
      --iters 5 --json-out "$RES/torch_s256.json" ;;
  matmul) deno run -A tasks/matmul_bench.ts --torch --md="$RES/matmul.md" ;;
  bench-b)
    deno task bench --preset B --image-size 32 --channels 3 --batch-size 128 --precision f32,f16 \
      --skip linear,breakdown --repeats 2 ;;
  torch-b)
    python3 scripts/pytorch_bench.py --preset B --image-size 32 --channels 3 --batch-size 128 \
      --modes fp32,bf16 --no-matmul --sample-runs 1 --iters 10 --json-out "$RES/torch_b.json" ;;
  ckpt-s | ckpt-b | refused | fit-micro | fit-ckpt | refused-small | fit-small)
    FMNIST=$DATA sh scripts/scale_gpu_runs.sh "$1" ;;
  vq-bench)
    deno task train-vqvae --bench --image-size 32 --in-channels 3 --batch-size 128
    python3 scripts/pytorch_vqvae.py --bench --image-size 32 --in-channels 3 --batch-size 128 ;;
  vq-fmnist) deno task train-vqvae $FM $T 240 --name vq-fmnist ;;
  vq-emoji | vq-emoji-aug*)
    # One command; each variant's flags (the run is named after the part).
    local extra="" limit=240
    case "$1" in
    vq-emoji-aug) extra="--hflip --shift 2" ;;
    vq-emoji-aug4) extra="--hflip --shift 4" ;;
    vq-emoji-aug-c64) extra="--hflip --shift 2 --channels 64" ;;
    vq-emoji-aug-30k)
      extra="--hflip --shift 2 --steps 30000 --eval-every 2000 --lr-schedule cosine" limit=540 ;;
    vq-emoji-aug-d8) extra="--hflip --shift 2 --code-dim 8" ;;
    esac
    deno task train-vqvae --dataset emoji --image-size 32 $extra $T $limit --name "$1" ;;
  fm-latent-fmnist)
    deno task train --vqvae runs/vq-fmnist $FM --preset S $T 150 --name fm-latent-fmnist ;;
  fm-pixel-fmnist) deno task train $FM --preset S $T 150 --name fm-pixel-fmnist ;;
  fm-latent-emoji | fm-latent-emoji-aug) # on runs/vq-emoji, runs/vq-emoji-aug (or EMOJI_VQ)
    deno task train --vqvae "${EMOJI_VQ:-runs/vq-${1#fm-latent-}}" --dataset emoji --preset S \
      $T 150 --name "$1" ;;
  fm-latent-emoji-best)
    # The finished emoji VQ-VAE (final weights written) whose last held-out PSNR is highest.
    local best
    best=$(for d in runs/vq-emoji*; do
      [ -f "$d/vqvae.safetensors" ] && [ -f "$d/eval.jsonl" ] &&
        echo "$(tail -1 "$d/eval.jsonl" | grep -o '"psnr_heldout":[0-9.]*' | cut -d: -f2) $d"
    done | sort -n | tail -1 | cut -d' ' -f2)
    [ -n "$best" ] || { echo "no finished emoji VQ-VAE under runs/"; return 2; }
    echo "best emoji VQ-VAE: $best"
    deno task train --vqvae "$best" --dataset emoji --preset S $T 150 --name "$1" ;;
  fm-pixel-emoji) deno task train --dataset emoji --preset S $T 150 --name fm-pixel-emoji ;;
  b2-emoji) deno task train --dataset emoji --preset B $T 240 --name b2-emoji ;;
  *) echo "unknown part $1 (bash scripts/gpu_stay.sh list)"; return 2 ;;
  esac
}

# No network there: use node_modules as carried ("auto" would try to install playwright-core).
offline_deno_json() { sed -i 's/"nodeModulesDir": "auto"/"nodeModulesDir": "manual"/' deno.json; }

gpu_env() {
  [ -f .gpu-select/libVkLayer_flowgpu_gpu_select.so ] ||
    { echo "no .gpu-select: sh scripts/gpu_select/build.sh here, then carry .gpu-select"; exit 2; }
  export VK_LAYER_PATH=$PWD/.gpu-select VK_INSTANCE_LAYERS=VK_LAYER_FLOWGPU_gpu_select \
    FLOWGPU_GPU=$1 DENO_WEBGPU_BACKEND=vulkan CUDA_VISIBLE_DEVICES=$1 CUDA_DEVICE_ORDER=PCI_BUS_ID
}

case "${1:-}" in
list) echo "$PARTS" ;;
queue-on)
  # GPU N alone: Deno's WebGPU through the Vulkan layer of scripts/gpu_select (built into
  # .gpu-select and carried), on Vulkan only (no fallback to GL, which would land on GPU 0);
  # PyTorch through CUDA_VISIBLE_DEVICES. Both count GPUs in PCI bus order, as nvidia-smi does.
  gpu_env "$2"
  shift 2
  exec bash "$0" queue "$@"
  ;;
check)
  # Each GPU's probe must raise that GPU's memory in use (its 1 GiB) and no other's; exit 0 if so,
  # so that `check && two queues || one queue` needs no reading by hand (a hand-written awk misread
  # the figures once and a two-GPU stay ran one queue).
  offline_deno_json
  ok=1
  for n in 0 1; do
    (gpu_env $n && run_part probe) &
    sleep 8
    mem=$(nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits)
    echo "FLOWGPU_GPU=$n: $(echo "$mem" | tr '\n' ' ')(MiB)"
    echo "$mem" | awk -F', *' -v n=$n '($1 == n) != ($2 > 500) { bad = 1 } END { exit bad }' || ok=0
    wait
  done
  if [ $ok = 1 ]; then echo "check: each probe on its own GPU"; else echo "check: FAILED"; exit 1; fi
  ;;
queue)
  shift
  echo "queue start $$ $*" >>"$RES/status"
  offline_deno_json
  # The PyTorch training that a first call may have started in the background runs first.
  while pgrep -f "[s]cripts/pytorch_train.py" >/dev/null; do sleep 2; done
  # Each part runs in a shell of its own (an exported function) under timeout, whose signal
  # reaches every process of the part.
  export -f run_part
  export RES DATA FM
  for p in "$@"; do
    limit=$(echo "$PARTS" | awk -v p="$p" '$1 == p { print $3 }')
    t0=$(date +%s)
    echo "== $p: $(echo "$PARTS" | awk -v p="$p" '$1 == p')" >"$RES/$p.log"
    timeout -k 10 "${limit:-600}" bash -c "run_part $p" >>"$RES/$p.log" 2>&1
    rc=$?
    echo "$p rc=$rc start=$t0 wall=$(($(date +%s) - t0))s" >>"$RES/status"
  done
  echo "queue done $(date +%s)" >>"$RES/status"
  ;;
watch)
  end=$(($(date +%s) + $2))
  sleep 10 # the queues write their start lines
  # Until every queue started has ended (each writes a start and a done line).
  while [ "$(date +%s)" -lt $end ] &&
    [ "$(grep -c "queue start" "$RES/status")" -gt "$(grep -c "queue done" "$RES/status")" ]; do
    sleep 20
    echo "--- $(date +%T) $(tail -1 "$RES/status" 2>/dev/null)"
    nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader | tr '\n' ' '
    echo
    for l in $(ls -t "$RES"/*.log | head -2); do
      echo "[$(basename "$l")] $(tail -c 200 "$l" | tr '\r' '\n' | tail -1)"
    done
  done
  cat "$RES/status"
  cp "$RES"/*.safetensors "$3/" 2>/dev/null
  # Runs without their checkpoints (flow checkpoints are too big to come back), but with a
  # VQ-VAE's vqvae.safetensors, which --vqvae needs on the next lease.
  for v in runs/vq-*/vqvae.safetensors; do
    [ -f "$v" ] && cp "$v" "$3/$(basename "$(dirname "$v")").safetensors"
  done
  # Two archives, VQ-VAE runs with the logs and flow runs apart: only files ≤ 16 MiB come back, and
  # one archive of five VQ-VAE runs and two flow runs was 17 MB.
  runs_matching() { # run directories (grep's arguments select), as paths from /
    ls -d runs/*/ 2>/dev/null | grep -v '^runs/latest/$' | grep "$@" | sed "s|^|${PWD#/}/|"
  }
  pack() { # ARCHIVE PATH... (paths from /)
    local out=$1
    shift
    tar czf "$out" --exclude='*.safetensors' --exclude=checkpoints --exclude=latents -C / "$@"
  }
  pack "$3/res.tgz" "${RES#/}" $(runs_matching '^runs/vq-') \
    $(cd / && ls -d tmp/pytorch-S-bf16 2>/dev/null)
  other=$(runs_matching -v '^runs/vq-')
  [ -z "$other" ] || pack "$3/runs.tgz" $other
  ls -la "$3"
  ;;
*) sed -n 2,9p "$0"; exit 2 ;;
esac
