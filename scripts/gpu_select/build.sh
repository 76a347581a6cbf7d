#!/bin/sh
# Builds the Vulkan layer VK_LAYER_FLOWGPU_gpu_select into .gpu-select/ (git-ignored; ~20 KB, carry
# it to the GPU machine). Needs gcc and the Vulkan headers (Debian: apt-get install libvulkan-dev).
# There, one GPU of several for a process:
#   export VK_LAYER_PATH=$PWD/.gpu-select VK_INSTANCE_LAYERS=VK_LAYER_FLOWGPU_gpu_select FLOWGPU_GPU=1
# (CUDA_VISIBLE_DEVICES=1 for PyTorch; both count in PCI bus order, as nvidia-smi does).
set -eu
cd "$(dirname "$0")/../.."
mkdir -p .gpu-select
gcc -shared -fPIC -O2 -fvisibility=hidden -Wall -Wextra -o .gpu-select/libVkLayer_flowgpu_gpu_select.so \
  scripts/gpu_select/gpu_select_layer.c
cat >.gpu-select/VkLayer_flowgpu_gpu_select.json <<'JSON'
{
  "file_format_version": "1.1.2",
  "layer": {
    "name": "VK_LAYER_FLOWGPU_gpu_select",
    "type": "GLOBAL",
    "library_path": "./libVkLayer_flowgpu_gpu_select.so",
    "api_version": "1.3.239",
    "implementation_version": "1",
    "description": "Shows the application the FLOWGPU_GPU-th GPU (PCI bus order) alone"
  }
}
JSON
ls -la .gpu-select
