/* elm-runner: runs a compiled module in its own process, for targets this machine can only
 * emulate (qemu-user). Built with the target's toolchain next to the module.
 *   elm-runner MODULE.so selftest                 exit 0 when the embedded self-test passes
 *   elm-runner MODULE.so run IN.bin... OUT.bin... raw little-endian float32, in module order */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long long elements(const elm_tensor* t) {
  long long n = 1;
  for (int d = 0; d < t->rank; ++d) n *= t->dims[d];
  return n;
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  const elm_module* (*entry)(void) = (const elm_module* (*)(void))dlsym(handle, "edgeloop_module_v1");
  const elm_module* m = entry ? entry() : 0;
  if (!m || m->abi != EDGELOOP_MODULE_ABI) {
    fprintf(stderr, "not an edgeloop module of ABI version %d\n", EDGELOOP_MODULE_ABI);
    return 2;
  }
  void* workspace = calloc(m->workspace_bytes / 4 + 1, 4);
  if (strcmp(argv[2], "selftest") == 0) return m->selftest(workspace) == 0 ? 0 : 1;
  if (strcmp(argv[2], "run") != 0 || argc != 3 + (int)m->num_inputs + (int)m->num_outputs) return 2;
  const void* inputs[64];
  void* outputs[64];
  if (m->num_inputs > 64 || m->num_outputs > 64) return 2;
  for (unsigned k = 0; k < m->num_inputs; ++k) {
    const long long n = elements(&m->inputs[k]);
    float* buffer = malloc((size_t)n * 4 + 4);
    FILE* f = fopen(argv[3 + k], "rb");
    if (!f || fread(buffer, 4, (size_t)n, f) != (size_t)n) return 2;
    fclose(f);
    inputs[k] = buffer;
  }
  for (unsigned k = 0; k < m->num_outputs; ++k) outputs[k] = malloc((size_t)elements(&m->outputs[k]) * 4 + 4);
  if (m->run(workspace, inputs, outputs) != 0) return 1;
  for (unsigned k = 0; k < m->num_outputs; ++k) {
    FILE* f = fopen(argv[3 + m->num_inputs + k], "wb");
    const long long n = elements(&m->outputs[k]);
    if (!f || fwrite(outputs[k], 4, (size_t)n, f) != (size_t)n) return 2;
    fclose(f);
  }
  return 0;
}
