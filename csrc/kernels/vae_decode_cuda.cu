// Batched autoregressive LSTM decode on a CUDA GPU (specification: vaenas/ops/reference.py::vae_decode).
//
// One launch decodes all T positions. A block owns kRowsPerBlock rows; their h and c live in shared
// memory for the whole decode. Per position:
//   1. gates + cell update: a thread owns a hidden unit j and computes its 4 gates for all the
//      block's rows (kRowsPerBlock x 4 accumulators in registers), so each weight it reads is used
//      kRowsPerBlock times; h[r, k] is a shared-memory broadcast. W_hh^T [H, 4H] is staged in shared
//      memory when it fits (H <= 112 on an H100's 227 KB), else read from global memory (L2-resident:
//      1 MB at H = 256) with the same coalesced pattern (consecutive threads, consecutive j).
//   2. heads + mask + softmax + sampling: a warp per row, one lane per token (V <= 32).
// Not yet tuned on a GPU (written on a machine without one): correctness first.
#include "kernels/vae_decode_cuda.cuh"

#include <algorithm>
#include <cmath>

namespace vaenas {
namespace kernels {
namespace {

constexpr int kRowsPerBlock = 8;
constexpr int kMaxThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2) value += __shfl_xor_sync(kFullMask, value, delta);
  return value;
}

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2) value = fmaxf(value, __shfl_xor_sync(kFullMask, value, delta));
  return value;
}

// Dynamic shared memory: h [kRowsPerBlock][H], next h [kRowsPerBlock][H], c [kRowsPerBlock][H],
// then W_hh^T [H][4H] when kSharedWeights.
template <bool kSharedWeights>
__global__ void __launch_bounds__(kMaxThreads) vae_decode_kernel(const VaeDecodeCudaProblem problem) {
  extern __shared__ float shared[];
  __shared__ int64_t table_row[kRowsPerBlock];
  __shared__ int64_t budget_used[kRowsPerBlock];
  __shared__ float row_log_prob[kRowsPerBlock];

  const int hidden = static_cast<int>(problem.hidden);
  const int gates = 4 * hidden;
  const int max_vocab = static_cast<int>(problem.max_vocab);
  const int64_t positions = problem.positions;
  const int64_t first_row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock;
  const int rows = static_cast<int>(min(static_cast<int64_t>(kRowsPerBlock), problem.num_rows - first_row));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;

  float* h = shared;
  float* next = h + kRowsPerBlock * hidden;
  float* c = next + kRowsPerBlock * hidden;
  const float* weight_hh_t = problem.weight_hh_t;
  if (kSharedWeights) {
    float* staged = c + kRowsPerBlock * hidden;
    for (int i = threadIdx.x; i < hidden * gates; i += blockDim.x) staged[i] = problem.weight_hh_t[i];
    weight_hh_t = staged;
  }

  // h0 = tanh(z · latent_weight^T + latent_bias), c0 = 0; rows past M stay 0 (computed, never written).
  for (int i = threadIdx.x; i < kRowsPerBlock * hidden; i += blockDim.x) {
    const int r = i / hidden, j = i % hidden;
    float value = 0.0f;
    if (r < rows) {
      const float* z = problem.z + (first_row + r) * problem.latent_size;
      const float* w = problem.latent_weight + static_cast<int64_t>(j) * problem.latent_size;
      float accumulator = problem.latent_bias[j];
      for (int64_t k = 0; k < problem.latent_size; ++k) accumulator += z[k] * w[k];
      value = tanhf(accumulator);
    }
    h[i] = value;
    c[i] = 0.0f;
  }
  if (threadIdx.x < kRowsPerBlock) {
    table_row[threadIdx.x] = 0;
    budget_used[threadIdx.x] = 0;
    row_log_prob[threadIdx.x] = 0.0f;
  }
  __syncthreads();

  int64_t offset = 0;  // exclusive prefix sum of vocab_sizes up to t
  for (int64_t t = 0; t < positions; ++t) {
    // 1. Gates and cell update; thread j writes c[:, j] and next[:, j] only.
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
      float gate[kRowsPerBlock][4];
#pragma unroll
      for (int r = 0; r < kRowsPerBlock; ++r) {
        const float* input = problem.input_table + table_row[r] * gates + j;
#pragma unroll
        for (int q = 0; q < 4; ++q) gate[r][q] = input[q * hidden];
      }
      for (int k = 0; k < hidden; ++k) {
        const float* w = weight_hh_t + static_cast<int64_t>(k) * gates + j;
        const float w_i = w[0], w_f = w[hidden], w_g = w[2 * hidden], w_o = w[3 * hidden];
#pragma unroll
        for (int r = 0; r < kRowsPerBlock; ++r) {
          const float value = h[r * hidden + k];
          gate[r][0] = fmaf(value, w_i, gate[r][0]);
          gate[r][1] = fmaf(value, w_f, gate[r][1]);
          gate[r][2] = fmaf(value, w_g, gate[r][2]);
          gate[r][3] = fmaf(value, w_o, gate[r][3]);
        }
      }
#pragma unroll
      for (int r = 0; r < kRowsPerBlock; ++r) {
        const float cell = sigmoid(gate[r][1]) * c[r * hidden + j] + sigmoid(gate[r][0]) * tanhf(gate[r][2]);
        c[r * hidden + j] = cell;
        next[r * hidden + j] = sigmoid(gate[r][3]) * tanhf(cell);
      }
    }
    __syncthreads();

    // 2. Heads, mask, softmax, sampling: warp per row, lane k holds token k (all lanes take part in
    // every shuffle; the token decision is computed identically on every lane).
    const int vocab = static_cast<int>(problem.vocab_sizes[t]);
    const bool budget_position = problem.budget_mask[t];
    for (int r = warp; r < rows; r += warps) {
      const int64_t row = first_row + r;
      const float* h_row = next + r * hidden;
      float logit = 0.0f;
      for (int v = 0; v < max_vocab; ++v) {
        const float* head = problem.weight_out + (t * max_vocab + v) * hidden;
        float partial = 0.0f;
        for (int k = lane; k < hidden; k += 32) partial = fmaf(head[k], h_row[k], partial);
        const float sum = warp_sum(partial);
        if (lane == v) logit = sum + problem.bias_out[t * max_vocab + v];
      }
      const bool exhausted = budget_position && budget_used[r] >= problem.budget_max;
      const bool allowed = lane < vocab && !(exhausted && lane != 0);
      const float scaled = allowed ? logit / problem.temperature : -INFINITY;
      const float maximum = warp_max(scaled);
      const float sum = warp_sum(allowed ? expf(scaled - maximum) : 0.0f);
      const float log_p = scaled - maximum - logf(sum);

      int token = 0;
      if (problem.greedy) {
        // The first maximum, as torch.argmax: lanes in order, strict comparison.
        float best = __shfl_sync(kFullMask, log_p, 0);
        for (int k = 1; k < max_vocab; ++k) {
          const float candidate = __shfl_sync(kFullMask, log_p, k);
          if (candidate > best) {
            best = candidate;
            token = k;
          }
        }
      } else {
        float u;
        if (problem.uniforms != nullptr) {
          u = problem.uniforms[row * positions + t];
        } else {
          u = vae_decode_uniform(problem.seed, row, t);
        }
        // Cumulative probability in token order, in double like torch.cumsum on the CPU.
        const float probability = allowed ? expf(log_p) : 0.0f;
        double cumulative = 0.0;
        int last_allowed = 0;
        token = -1;
        for (int k = 0; k < max_vocab; ++k) {
          cumulative += __shfl_sync(kFullMask, probability, k);
          const bool allowed_k = __shfl_sync(kFullMask, allowed, k);
          if (allowed_k) {
            last_allowed = k;
            if (token < 0 && static_cast<float>(cumulative) > u) token = k;
          }
        }
        if (token < 0) token = last_allowed;
      }
      const float chosen_log_p = __shfl_sync(kFullMask, log_p, token);
      if (lane == 0) {
        problem.tokens[row * positions + t] = token;
        row_log_prob[r] += chosen_log_p;
        if (budget_position && token != 0) ++budget_used[r];
        table_row[r] = 1 + offset + token;
      }
    }
    offset += vocab;
    float* swap = h;
    h = next;
    next = swap;
    __syncthreads();
  }
  if (threadIdx.x < rows) problem.log_prob[first_row + threadIdx.x] = row_log_prob[threadIdx.x];
}

}  // namespace

cudaError_t vae_decode_cuda(const VaeDecodeCudaProblem& problem, cudaStream_t stream) {
  if (problem.num_rows == 0) return cudaSuccess;
  if (problem.max_vocab < 1 || problem.max_vocab > kVaeDecodeCudaMaxVocab || problem.hidden < 1) return cudaErrorInvalidValue;
  int device = 0, shared_limit = 0;
  cudaError_t error = cudaGetDevice(&device);
  if (error != cudaSuccess) return error;
  error = cudaDeviceGetAttribute(&shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (error != cudaSuccess) return error;
  // The kernel's static shared memory (table_row, budget_used, row_log_prob) also counts.
  const int64_t static_bytes = kRowsPerBlock * (2 * sizeof(int64_t) + sizeof(float));
  const int64_t available = shared_limit - static_bytes;
  const int64_t state_bytes = 3 * kRowsPerBlock * problem.hidden * static_cast<int64_t>(sizeof(float));
  const int64_t weight_bytes = 4 * problem.hidden * problem.hidden * static_cast<int64_t>(sizeof(float));
  if (state_bytes > available) return cudaErrorInvalidValue;
  const bool shared_weights = state_bytes + weight_bytes <= available;
  const int64_t bytes = shared_weights ? state_bytes + weight_bytes : state_bytes;

  // Threads over hidden units, whole warps (the heads use one warp per row), at most kMaxThreads.
  const int threads = static_cast<int>(std::min<int64_t>(kMaxThreads, (problem.hidden + 31) / 32 * 32));
  const int64_t blocks = (problem.num_rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  const auto kernel = shared_weights ? vae_decode_kernel<true> : vae_decode_kernel<false>;
  error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (error != cudaSuccess) return error;
  kernel<<<static_cast<unsigned>(blocks), threads, static_cast<size_t>(bytes), stream>>>(problem);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace vaenas
