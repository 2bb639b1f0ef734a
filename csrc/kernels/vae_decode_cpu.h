// Batched autoregressive LSTM decode on the CPU, torch-free (raw pointers and sizes).
// Specification: vaenas/ops/reference.py::vae_decode. The torch binding is csrc/cpu/vae_decode.cpp.
#pragma once

#include <cstdint>

namespace vaenas {
namespace kernels {

// One decode problem. Every pointer is a dense row-major array; shapes as in the reference
// (M rows, d latent size, H hidden size, T positions, V = max vocabulary, R = 1 + sum(vocab)).
struct VaeDecodeProblem {
  const float* z;              // [M, d]
  const float* latent_weight;  // [H, d]
  const float* latent_bias;    // [H]
  const float* input_table;    // [R, 4H]
  const float* weight_hh;      // [4H, H], gate order i, f, g, o
  const float* weight_out;     // [T, V, H]
  const float* bias_out;       // [T, V]
  const int64_t* vocab_sizes;  // [T], each in [1, V]; sum(vocab_sizes) = R - 1
  const bool* budget_mask;     // [T]
  const float* uniforms;       // [M, T] in [0, 1); nullptr when greedy
  int64_t budget_max;
  float temperature;           // > 0
  bool greedy;
  int64_t num_rows;            // M
  int64_t latent_size;         // d
  int64_t hidden;              // H
  int64_t positions;           // T
  int64_t max_vocab;           // V
  int64_t table_rows;          // R
  int64_t* tokens;             // out [M, T]
  float* log_prob;             // out [M]
};

// Floats of the workspace that vae_decode_cpu_pack fills (the weights re-laid for the SIMD width
// this CPU supports).
int64_t vae_decode_cpu_workspace_size(const VaeDecodeProblem& problem);

// Re-lays input_table, weight_hh and weight_out into `workspace` (vae_decode_cpu_workspace_size
// floats). Once per problem, before vae_decode_cpu_rows.
void vae_decode_cpu_pack(const VaeDecodeProblem& problem, float* workspace);

// Decodes rows [begin, end) into tokens[begin:end] and log_prob[begin:end]. Rows are independent:
// disjoint ranges may run on different threads with the same packed workspace.
void vae_decode_cpu_rows(const VaeDecodeProblem& problem, const float* workspace, int64_t begin, int64_t end);

// Single-threaded convenience: pack, then decode every row (native tests, the CUDA test's oracle).
void vae_decode_cpu(const VaeDecodeProblem& problem);

}  // namespace kernels
}  // namespace vaenas
