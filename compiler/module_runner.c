/* elm-runner: runs a compiled module in its own process, for targets this machine can only
 * emulate (qemu-user). Built with the target's toolchain next to the module.
 *   elm-runner MODULE.so selftest                 exit 0 when the embedded self-test passes
 *   elm-runner MODULE.so run N IN.bin... OUT.bin...
 *       N samples: each file holds N tensors back to back, raw float32, in module order */
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
  if (strcmp(argv[2], "run") != 0 || argc != 4 + (int)m->num_inputs + (int)m->num_outputs) return 2;
  const long samples = atol(argv[3]);
  FILE* in_files[64];
  FILE* out_files[64];
  const void* inputs[64];
  void* outputs[64];
  if (m->num_inputs > 64 || m->num_outputs > 64 || samples < 0) return 2;
  for (unsigned k = 0; k < m->num_inputs; ++k) {
    in_files[k] = fopen(argv[4 + k], "rb");
    inputs[k] = malloc((size_t)elements(&m->inputs[k]) * 4 + 4);
    if (!in_files[k] || !inputs[k]) return 2;
  }
  for (unsigned k = 0; k < m->num_outputs; ++k) {
    out_files[k] = fopen(argv[4 + m->num_inputs + k], "wb");
    outputs[k] = malloc((size_t)elements(&m->outputs[k]) * 4 + 4);
    if (!out_files[k] || !outputs[k]) return 2;
  }
  for (long s = 0; s < samples; ++s) {
    for (unsigned k = 0; k < m->num_inputs; ++k) {
      const size_t n = (size_t)elements(&m->inputs[k]);
      if (fread((void*)inputs[k], 4, n, in_files[k]) != n) return 2;
    }
    if (m->run(workspace, inputs, outputs) != 0) return 1;
    for (unsigned k = 0; k < m->num_outputs; ++k) {
      const size_t n = (size_t)elements(&m->outputs[k]);
      if (fwrite(outputs[k], 4, n, out_files[k]) != n) return 2;
    }
  }
  for (unsigned k = 0; k < m->num_outputs; ++k) {
    if (fclose(out_files[k]) != 0) return 2;
  }
  return 0;
}
