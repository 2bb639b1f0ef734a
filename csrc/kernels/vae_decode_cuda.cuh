// Batched autoregressive LSTM decode on a CUDA GPU, torch-free (raw device pointers, a stream).
// Specification: vaenas/ops/reference.py::vae_decode. The torch binding is csrc/cuda/vae_decode.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace vaenas {
namespace kernels {

// One decode problem; every pointer is device memory, dense row-major. Shapes as in the reference
// (M rows, d latent size, H hidden size, T positions, V = max vocabulary, R = 1 + sum(vocab)).
struct VaeDecodeCudaProblem {
  const float* z;              // [M, d]
  const float* latent_weight;  // [H, d]
  const float* latent_bias;    // [H]
  const float* input_table;    // [R, 4H]
  const float* weight_hh_t;    // [H, 4H]: weight_hh TRANSPOSED, so that threads over hidden units read it coalesced
  const float* weight_out;     // [T, V, H]
  const float* bias_out;       // [T, V]
  const int64_t* vocab_sizes;  // [T], each in [1, V]
  const bool* budget_mask;     // [T]
  // [M, T] in [0, 1), or nullptr: then u[row, t] = vae_decode_uniform(seed, row, t) (Philox4x32-10).
  const float* uniforms;
  uint64_t seed;
  int64_t budget_max;
  float temperature;  // > 0
  bool greedy;
  int64_t num_rows;     // M
  int64_t latent_size;  // d
  int64_t hidden;       // H
  int64_t positions;    // T
  int64_t max_vocab;    // V, at most kVaeDecodeCudaMaxVocab
  int64_t* tokens;      // out [M, T]
  float* log_prob;      // out [M]
};

#ifdef __CUDACC__
#define VAENAS_HOST_DEVICE __host__ __device__
#else
#define VAENAS_HOST_DEVICE
#endif

// Philox4x32-10 (Salmon et al., SC'11; the generator of curand's curandStatePhilox4_32_10_t and of
// torch's CUDA RNG), written out so the kernel needs no curand headers (the CUDA toolkit of a torch
// pip install may not ship them). Known-answer vectors in csrc/tests/test_vae_decode_cuda.cu.
struct Philox4x32 {
  uint32_t word[4];
};

VAENAS_HOST_DEVICE inline uint32_t philox_multiply_high(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

VAENAS_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 counter, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += 0x9E3779B9u;
      key1 += 0xBB67AE85u;
    }
    const uint32_t high0 = philox_multiply_high(0xD2511F53u, counter.word[0]), low0 = 0xD2511F53u * counter.word[0];
    const uint32_t high1 = philox_multiply_high(0xCD9E8D57u, counter.word[2]), low1 = 0xCD9E8D57u * counter.word[2];
    counter = Philox4x32{{high1 ^ counter.word[1] ^ key0, low1, high0 ^ counter.word[3] ^ key1, low0}};
  }
  return counter;
}

// The uniform in [0, 1) of position t of row `row` when no uniforms are given: the first word of
// Philox4x32-10 at counter (t, 0, row low, row high) under key (seed low, seed high), top 24 bits
// scaled by 2^-24. Stateless, so a row's draws do not depend on how rows are split over blocks.
VAENAS_HOST_DEVICE inline float vae_decode_uniform(uint64_t seed, int64_t row, int64_t t) {
  const uint64_t row_bits = static_cast<uint64_t>(row), t_bits = static_cast<uint64_t>(t);
  const Philox4x32 counter{{static_cast<uint32_t>(t_bits), static_cast<uint32_t>(t_bits >> 32),
                            static_cast<uint32_t>(row_bits), static_cast<uint32_t>(row_bits >> 32)}};
  const Philox4x32 bits = philox4x32_10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(bits.word[0] >> 8) * (1.0f / 16777216.0f);
}

// One warp computes a row's logits, one lane per token.
constexpr int64_t kVaeDecodeCudaMaxVocab = 32;

// Launches the decode of every row on `stream`. Returns cudaErrorInvalidValue when H is too large
// for the recurrent state to fit in shared memory (3 · 8 rows · H floats), else the launch's error.
cudaError_t vae_decode_cuda(const VaeDecodeCudaProblem& problem, cudaStream_t stream);

}  // namespace kernels
}  // namespace vaenas
