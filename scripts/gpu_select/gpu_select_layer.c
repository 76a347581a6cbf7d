/*
 * VK_LAYER_FLOWGPU_gpu_select: a Vulkan layer that shows an application one GPU of several.
 *
 * Deno's WebGPU has no adapter choice (wgpu takes the first discrete GPU), so on a machine of two
 * GPUs every Deno process lands on the same one. With this layer enabled and FLOWGPU_GPU=N,
 * vkEnumeratePhysicalDevices (and the device-group query) return only the N-th GPU, counted in PCI
 * bus order as nvidia-smi and CUDA_DEVICE_ORDER=PCI_BUS_ID count (enumeration order where a device
 * does not report its bus). Everything else passes through. Build and use: scripts/gpu_select/build.sh.
 */
#include <stdlib.h>
#include <string.h>
#include <vulkan/vk_layer.h>
#include <vulkan/vulkan.h>

#define EXPORT __attribute__((visibility("default")))

static PFN_vkGetInstanceProcAddr next_gipa;
static PFN_vkGetDeviceProcAddr next_gdpa;
/* Resolved in vkCreateInstance: a later lookup through the next layer's vkGetInstanceProcAddr can
 * return the top of the chain (this layer) again. */
static PFN_vkEnumeratePhysicalDevices next_enumerate;
static PFN_vkGetPhysicalDeviceProperties2 next_props2;

static int selected(void) {
  const char *s = getenv("FLOWGPU_GPU");
  return s && *s ? atoi(s) : 0;
}

typedef struct {
  VkPhysicalDevice dev;
  unsigned key[4]; /* PCI domain, bus, device, function */
  unsigned order;
} Entry;

static int by_bus(const void *a, const void *b) {
  const Entry *x = a, *y = b;
  for (int i = 0; i < 4; i++)
    if (x->key[i] != y->key[i]) return x->key[i] < y->key[i] ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* The selected physical device, or NULL when there are fewer devices than FLOWGPU_GPU asks. */
static VkPhysicalDevice pick(VkInstance instance, VkResult *res) {
  PFN_vkEnumeratePhysicalDevices enumerate = next_enumerate;
  PFN_vkGetPhysicalDeviceProperties2 props2 = next_props2;
  uint32_t n = 0;
  *res = enumerate(instance, &n, NULL);
  if (*res != VK_SUCCESS || n == 0) return NULL;
  VkPhysicalDevice *all = calloc(n, sizeof *all);
  Entry *e = calloc(n, sizeof *e);
  *res = enumerate(instance, &n, all);
  VkPhysicalDevice chosen = NULL;
  if (*res == VK_SUCCESS || *res == VK_INCOMPLETE) {
    for (uint32_t i = 0; i < n; i++) {
      e[i].dev = all[i];
      e[i].order = i;
      if (props2) {
        VkPhysicalDevicePCIBusInfoPropertiesEXT pci = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT};
        VkPhysicalDeviceProperties2 p = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                         .pNext = &pci};
        props2(all[i], &p);
        e[i].key[0] = pci.pciDomain;
        e[i].key[1] = pci.pciBus;
        e[i].key[2] = pci.pciDevice;
        e[i].key[3] = pci.pciFunction;
      }
    }
    qsort(e, n, sizeof *e, by_bus);
    int want = selected();
    if (want >= 0 && (uint32_t)want < n) chosen = e[want].dev;
    *res = VK_SUCCESS;
  }
  free(all);
  free(e);
  return chosen;
}

/* Vulkan's count-then-fill protocol for a list of at most the one selected device. */
static VkResult one_of(VkInstance instance, uint32_t *count, int fill, VkPhysicalDevice *out) {
  VkResult res;
  VkPhysicalDevice d = pick(instance, &res);
  if (res != VK_SUCCESS) return res;
  if (!fill || !d) {
    *count = d ? 1 : 0;
    return VK_SUCCESS;
  }
  if (*count < 1) return VK_INCOMPLETE;
  *count = 1;
  *out = d;
  return VK_SUCCESS;
}

static VKAPI_ATTR VkResult VKAPI_CALL EnumeratePhysicalDevices(VkInstance instance, uint32_t *count,
                                                               VkPhysicalDevice *devices) {
  VkPhysicalDevice d = VK_NULL_HANDLE;
  VkResult res = one_of(instance, count, devices != NULL, &d);
  if (devices && res == VK_SUCCESS && *count == 1) devices[0] = d;
  return res;
}

static VKAPI_ATTR VkResult VKAPI_CALL EnumeratePhysicalDeviceGroups(
    VkInstance instance, uint32_t *count, VkPhysicalDeviceGroupProperties *groups) {
  VkPhysicalDevice d = VK_NULL_HANDLE;
  VkResult res = one_of(instance, count, groups != NULL, &d);
  if (groups && res == VK_SUCCESS && *count == 1) {
    groups[0].physicalDeviceCount = 1;
    groups[0].physicalDevices[0] = d;
    groups[0].subsetAllocation = VK_FALSE;
  }
  return res;
}

static VKAPI_ATTR VkResult VKAPI_CALL CreateInstance(const VkInstanceCreateInfo *info,
                                                     const VkAllocationCallbacks *alloc,
                                                     VkInstance *instance) {
  VkLayerInstanceCreateInfo *link = (VkLayerInstanceCreateInfo *)info->pNext;
  while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO &&
                   link->function == VK_LAYER_LINK_INFO))
    link = (VkLayerInstanceCreateInfo *)link->pNext;
  if (!link) return VK_ERROR_INITIALIZATION_FAILED;
  next_gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  link->u.pLayerInfo = link->u.pLayerInfo->pNext; /* the next layer's link */
  PFN_vkCreateInstance create = (PFN_vkCreateInstance)next_gipa(NULL, "vkCreateInstance");
  VkResult res = create(info, alloc, instance);
  if (res != VK_SUCCESS) return res;
  next_enumerate =
      (PFN_vkEnumeratePhysicalDevices)next_gipa(*instance, "vkEnumeratePhysicalDevices");
  next_props2 = (PFN_vkGetPhysicalDeviceProperties2)next_gipa(*instance,
                                                               "vkGetPhysicalDeviceProperties2");
  return next_enumerate ? VK_SUCCESS : VK_ERROR_INITIALIZATION_FAILED;
}

static VKAPI_ATTR VkResult VKAPI_CALL CreateDevice(VkPhysicalDevice physical,
                                                   const VkDeviceCreateInfo *info,
                                                   const VkAllocationCallbacks *alloc,
                                                   VkDevice *device) {
  VkLayerDeviceCreateInfo *link = (VkLayerDeviceCreateInfo *)info->pNext;
  while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO &&
                   link->function == VK_LAYER_LINK_INFO))
    link = (VkLayerDeviceCreateInfo *)link->pNext;
  if (!link) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  next_gdpa = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
  link->u.pLayerInfo = link->u.pLayerInfo->pNext;
  PFN_vkCreateDevice create = (PFN_vkCreateDevice)gipa(NULL, "vkCreateDevice");
  return create(physical, info, alloc, device);
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL GetDeviceProcAddr(VkDevice device,
                                                                  const char *name) {
  if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)GetDeviceProcAddr;
  return next_gdpa ? next_gdpa(device, name) : NULL;
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL GetInstanceProcAddr(VkInstance instance,
                                                                    const char *name) {
  if (!strcmp(name, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)GetInstanceProcAddr;
  if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)CreateInstance;
  if (!strcmp(name, "vkCreateDevice")) return (PFN_vkVoidFunction)CreateDevice;
  if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)GetDeviceProcAddr;
  if (!strcmp(name, "vkEnumeratePhysicalDevices"))
    return (PFN_vkVoidFunction)EnumeratePhysicalDevices;
  if (!strcmp(name, "vkEnumeratePhysicalDeviceGroups") ||
      !strcmp(name, "vkEnumeratePhysicalDeviceGroupsKHR"))
    return (PFN_vkVoidFunction)EnumeratePhysicalDeviceGroups;
  return next_gipa ? next_gipa(instance, name) : NULL;
}

EXPORT VKAPI_ATTR VkResult VKAPI_CALL
vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *iface) {
  if (iface->loaderLayerInterfaceVersion > 2) iface->loaderLayerInterfaceVersion = 2;
  iface->pfnGetInstanceProcAddr = GetInstanceProcAddr;
  iface->pfnGetDeviceProcAddr = GetDeviceProcAddr;
  iface->pfnGetPhysicalDeviceProcAddr = NULL;
  return VK_SUCCESS;
}
