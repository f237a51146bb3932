/* edgeloop compiled module ABI: the contract between edgeloop-compile and edgeloop-agent.
 * C, stable. A module is one shared object built for one target class; it exports
 * edgeloop_module_v1(), which describes the model and runs it. Weights are static const data
 * inside the object; activations live in a workspace the caller provides, so any number of
 * calls may run at once, each with its own workspace. */
#ifndef EDGELOOP_MODULE_ABI_H_
#define EDGELOOP_MODULE_ABI_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDGELOOP_MODULE_ABI 1

typedef enum { ELM_F32 = 1, ELM_I8 = 2, ELM_U8 = 3, ELM_I32 = 4, ELM_I64 = 5 } elm_dtype;

typedef struct {
  const char* name;
  elm_dtype dtype;
  int32_t rank;
  const int64_t* dims;
} elm_tensor;

typedef struct {
  uint32_t abi;                       /* EDGELOOP_MODULE_ABI */
  const char* model_digest;           /* sha256 of the source ONNX */
  const char* target;                 /* target class */
  const char* backend;                /* "c", later "xnnpack" */
  uint64_t workspace_bytes;           /* scratch one concurrent call needs; planned at compile time */
  uint32_t num_inputs, num_outputs;   /* in the ONNX graph's order (inputs without initialisers) */
  const elm_tensor* inputs;
  const elm_tensor* outputs;
  int (*run)(void* workspace, const void* const* inputs, void* const* outputs); /* reentrant; 0 = ok */
  int (*selftest)(void* workspace);   /* runs embedded vectors; 0 = outputs match */
} elm_module;

const elm_module* edgeloop_module_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGELOOP_MODULE_ABI_H_ */
