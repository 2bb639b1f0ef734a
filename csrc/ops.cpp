// The op boundary of vaenas: every schema of the `vaenas` namespace is declared here, once.
// CPU implementations register in csrc/cpu/*.cpp, CUDA ones in csrc/cuda/*; fake (meta)
// implementations and autograd formulas live in vaenas/ops/*.py.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import vaenas._C` runs the static TORCH_LIBRARY initialisers below; the module itself is empty
// (ops are reached through torch.ops.vaenas, never through pybind11 functions).
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace vaenas {

bool compiled_with_cuda() {
#ifdef VAENAS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

TORCH_LIBRARY(vaenas, m) {
  m.def("compiled_with_cuda() -> bool", &compiled_with_cuda);

  // Batched VAE decode (see vaenas/ops/reference.py::vae_decode for the specification).
  m.def(
      "vae_decode(Tensor z, Tensor latent_weight, Tensor latent_bias, Tensor input_table, "
      "Tensor weight_hh, Tensor weight_out, Tensor bias_out, Tensor vocab_sizes, "
      "Tensor budget_mask, int budget_max, Tensor? uniforms, float temperature, bool greedy, "
      "int seed) -> (Tensor tokens, Tensor log_prob)");

  // Exhaustive enumeration of the NAS-Bench-101 cell space (see vaenas/spaces/nasbench101.py).
  m.def(
      "nb101_enumerate(int max_vertices, int max_edges) -> (Tensor matrices, Tensor labels, "
      "Tensor num_vertices, Tensor fingerprints)");

  // NAS-Bench-101 graph hash of 26-token cells: uint8 [N, 16] md5 digests, zero for cells whose
  // output is not reachable from the input (see vaenas/ops/nb101_enumerate.py::nb101_hash).
  m.def("nb101_hash(Tensor archs) -> Tensor fingerprints");

  // Batch norm per segment of equal consecutive rows + activation ('none', 'relu', 'silu'), fused
  // (see vaenas/ops/reference.py::segmented_batch_norm). Forward: given mean/var = evaluation;
  // returns y in x's layout and [S, C] statistics (new tensors). Backward: dx and the per-segment
  // sums of g and g * x_hat (g: the gradient before the activation); dbias, dweight = their sums.
  m.def(
      "segmented_batch_norm_forward(Tensor x, int num_segments, Tensor? weight, Tensor? bias, float eps, "
      "Tensor? mean, Tensor? var, str activation) -> (Tensor y, Tensor mean, Tensor var)");
  m.def(
      "segmented_batch_norm_backward(Tensor grad, Tensor x, Tensor? weight, Tensor? bias, Tensor mean, "
      "Tensor var, float eps, int num_segments, str activation, bool training) -> "
      "(Tensor dx, Tensor sum_g, Tensor sum_gx)");
}

}  // namespace vaenas
