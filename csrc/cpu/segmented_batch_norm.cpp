// CPU implementation of vaenas::segmented_batch_norm_forward / _backward (schemas: csrc/ops.cpp;
// specification: vaenas/ops/reference.py::segmented_batch_norm; autograd and fakes:
// vaenas/ops/batch_norm_autograd.py). Batch norm per segment of b consecutive rows, fused with the
// activation that follows (none, relu, silu), forward and backward.
//
// x [N, C, *] is read as [N, C, L] in one of two dense layouts, where it lies: channels-first
// (NCHW: element (n, c, l) at (n*C + c)*L + l) or channels-last (at (n*L + l)*C + c). Any other
// layout is copied to contiguous once. Outputs take x's layout; the upstream gradient is brought
// to it when it differs (an expanded gradient, say). Statistics and arithmetic in
// at::opmath_type (float for half, bfloat16 and float; double for double).
// Forward: two passes for the statistics (sum, then centred squares: no cancellation), one pass
// for y = act(x * scale + shift). Backward: z = x * scale + shift recomputed as forward did, g = grad * act'(z);
// one pass for the sums of g and g * x_hat, one for dx. Per-segment sums are returned; dweight
// and dbias are their sums over segments (done in Python).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>

namespace vaenas {
namespace {

enum Activation { kNone = 0, kRelu = 1, kSilu = 2 };

Activation parse_activation(const std::string& name) {
  if (name == "none") return kNone;
  if (name == "relu") return kRelu;
  if (name == "silu") return kSilu;
  TORCH_CHECK(false, "segmented_batch_norm (cpu): activation must be 'none', 'relu' or 'silu', got '", name, "'");
}

template <int ACT, typename T>
inline T activate(T z) {
  if constexpr (ACT == kRelu) return std::max(z, T(0));
  if constexpr (ACT == kSilu) return z / (T(1) + std::exp(-z));
  return z;
}

// d act / dz; relu's is 0 at z = 0, as torch.relu's backward.
template <int ACT, typename T>
inline T derivative(T z) {
  if constexpr (ACT == kRelu) {
    // z > 0 as an integer compare of the bits (positive and not +0): GCC will not if-convert a
    // float compare under -ftrapping-math, and the loop stayed scalar with a mispredicted branch
    // (8x the time of no activation). Differs from torch only for a positive NaN z (1, not 0).
    using Int = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
    const Int positive = -Int(std::bit_cast<Int>(z) > 0);  // all ones where z > 0
    return std::bit_cast<T>(positive & std::bit_cast<Int>(T(1)));
  }
  if constexpr (ACT == kSilu) {
    const T sig = T(1) / (T(1) + std::exp(-z));
    return sig * (T(1) + z * (T(1) - sig));
  }
  return T(1);
}

// The problem in the kernels' terms: sizes, layout, and the per-(segment, channel) affine map.
struct Shape {
  int64_t segments, rows, channels, spatial;  // rows per segment
  bool channels_last;
  int64_t count() const { return rows * spatial; }
  // Offset of (row n, channel c, position l).
  int64_t at(int64_t n, int64_t c, int64_t l) const {
    return channels_last ? (n * spatial + l) * channels + c : (n * channels + c) * spatial + l;
  }
};

// Channels of one work item: a channel (channels-first) or a block of up to kBlock channels
// (channels-last, where a row of C values is contiguous). Each item covers one segment.
constexpr int64_t kBlock = 64;

int64_t channel_block(const Shape& shape) { return shape.channels_last ? kBlock : 1; }

// Calls body(begin_channel, end_channel, segment) for every work item, on at::parallel_for threads.
template <typename Body>
void for_each_item(const Shape& shape, const Body& body) {
  const int64_t block = channel_block(shape), blocks = (shape.channels + block - 1) / block;
  at::parallel_for(0, shape.segments * blocks, 1, [&](int64_t first, int64_t last) {
    for (int64_t item = first; item < last; ++item) {
      const int64_t segment = item / blocks, c0 = (item % blocks) * block;
      body(c0, std::min(c0 + block, shape.channels), segment);
    }
  });
}

// The per-channel affine map of a segment: y = act(x * scale + shift), from the statistics.
template <typename acc_t>
inline void affine_map(acc_t mean, acc_t var, double eps, const float* weight, const float* bias, int64_t c,
                       acc_t& scale, acc_t& shift) {
  scale = acc_t(1) / std::sqrt(var + acc_t(eps));
  if (weight != nullptr) scale *= acc_t(weight[c]);
  shift = -mean * scale + (bias != nullptr ? acc_t(bias[c]) : acc_t(0));
}

// The inner loops run along the layout's contiguous dimension with `omp simd` (vectorised with
// -fopenmp): channels-first along the L positions of one (row, channel), one accumulator per
// sum (an OpenMP simd reduction); channels-last along the channels of one (row, position), one
// accumulator per channel (stack arrays of kBlock).

template <typename scalar_t, int ACT>
void forward_channels_first(const Shape& shape, const scalar_t* x, scalar_t* y, const float* weight, const float* bias,
                            at::opmath_type<scalar_t>* mean, at::opmath_type<scalar_t>* var, bool given, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t L = shape.spatial;
  for_each_item(shape, [&](int64_t c, int64_t, int64_t segment) {
    const int64_t stat = segment * shape.channels + c, first = segment * shape.rows, last = first + shape.rows;
    if (!given) {
      acc_t sum = 0, squares = 0;
      for (int64_t n = first; n < last; ++n) {
        const scalar_t* p = x + shape.at(n, c, 0);
#pragma omp simd reduction(+ : sum)
        for (int64_t l = 0; l < L; ++l) sum += acc_t(p[l]);
      }
      const acc_t m = sum / acc_t(shape.count());
      for (int64_t n = first; n < last; ++n) {
        const scalar_t* p = x + shape.at(n, c, 0);
#pragma omp simd reduction(+ : squares)
        for (int64_t l = 0; l < L; ++l) squares += (acc_t(p[l]) - m) * (acc_t(p[l]) - m);
      }
      mean[stat] = m;
      var[stat] = squares / acc_t(shape.count());
    }
    acc_t scale, shift;
    affine_map(mean[stat], var[stat], eps, weight, bias, c, scale, shift);
    for (int64_t n = first; n < last; ++n) {
      const scalar_t* p = x + shape.at(n, c, 0);
      scalar_t* q = y + shape.at(n, c, 0);
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) q[l] = static_cast<scalar_t>(activate<ACT>(acc_t(p[l]) * scale + shift));
    }
  });
}

template <typename scalar_t, int ACT>
void forward_channels_last(const Shape& shape, const scalar_t* x, scalar_t* y, const float* weight, const float* bias,
                           at::opmath_type<scalar_t>* mean, at::opmath_type<scalar_t>* var, bool given, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = shape.channels;
  for_each_item(shape, [&](int64_t c0, int64_t c1, int64_t segment) {
    const int64_t width = c1 - c0, begin = segment * shape.count(), end = begin + shape.count();  // positions
    acc_t* m = mean + segment * C + c0;
    acc_t* v = var + segment * C + c0;
    if (!given) {
      acc_t sums[kBlock] = {}, squares[kBlock] = {};
      for (int64_t pos = begin; pos < end; ++pos) {
        const scalar_t* p = x + pos * C + c0;
#pragma omp simd
        for (int64_t k = 0; k < width; ++k) sums[k] += acc_t(p[k]);
      }
      for (int64_t k = 0; k < width; ++k) m[k] = sums[k] / acc_t(shape.count());
      for (int64_t pos = begin; pos < end; ++pos) {
        const scalar_t* p = x + pos * C + c0;
#pragma omp simd
        for (int64_t k = 0; k < width; ++k) squares[k] += (acc_t(p[k]) - m[k]) * (acc_t(p[k]) - m[k]);
      }
      for (int64_t k = 0; k < width; ++k) v[k] = squares[k] / acc_t(shape.count());
    }
    acc_t scale[kBlock], shift[kBlock];
    for (int64_t k = 0; k < width; ++k) affine_map(m[k], v[k], eps, weight, bias, c0 + k, scale[k], shift[k]);
    for (int64_t pos = begin; pos < end; ++pos) {
      const scalar_t* p = x + pos * C + c0;
      scalar_t* q = y + pos * C + c0;
#pragma omp simd
      for (int64_t k = 0; k < width; ++k) q[k] = static_cast<scalar_t>(activate<ACT>(acc_t(p[k]) * scale[k] + shift[k]));
    }
  });
}

// Backward per channel: the forward's affine map (scale, shift: z = x * scale + shift computed as
// the forward did, so that relu's derivative agrees with the forward's output to the last bit),
// mean, rstd, and w * rstd.
template <typename acc_t>
struct BackwardChannel {
  acc_t mean, rstd, scale, shift, factor;
  BackwardChannel() = default;
  BackwardChannel(acc_t m, acc_t var, double eps, const float* weight, const float* bias, int64_t c)
      : mean(m), rstd(acc_t(1) / std::sqrt(var + acc_t(eps))) {
    affine_map(m, var, eps, weight, bias, c, scale, shift);
    factor = (weight ? acc_t(weight[c]) : acc_t(1)) * rstd;
  }
};

template <typename scalar_t, int ACT>
void backward_channels_first(const Shape& shape, const scalar_t* grad, const scalar_t* x, scalar_t* dx,
                             const float* weight, const float* bias, const at::opmath_type<scalar_t>* mean,
                             const at::opmath_type<scalar_t>* var, at::opmath_type<scalar_t>* sum_g,
                             at::opmath_type<scalar_t>* sum_gx, bool training, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t L = shape.spatial;
  for_each_item(shape, [&](int64_t c, int64_t, int64_t segment) {
    const int64_t stat = segment * shape.channels + c, first = segment * shape.rows, last = first + shape.rows;
    const BackwardChannel<acc_t> ch(mean[stat], var[stat], eps, weight, bias, c);
    const acc_t m = ch.mean, r = ch.rstd, scale = ch.scale, shift = ch.shift, factor = ch.factor;
    acc_t sg = 0, sgx = 0;
    for (int64_t n = first; n < last; ++n) {
      const scalar_t* p = x + shape.at(n, c, 0);
      const scalar_t* g = grad + shape.at(n, c, 0);
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t l = 0; l < L; ++l) {
        const acc_t x_hat = (acc_t(p[l]) - m) * r;
        const acc_t gl = acc_t(g[l]) * derivative<ACT>(acc_t(p[l]) * scale + shift);
        sg += gl;
        sgx += gl * x_hat;
      }
    }
    sum_g[stat] = sg;
    sum_gx[stat] = sgx;
    const acc_t mean_g = training ? sg / acc_t(shape.count()) : acc_t(0);
    const acc_t mean_gx = training ? sgx / acc_t(shape.count()) : acc_t(0);
    for (int64_t n = first; n < last; ++n) {
      const scalar_t* p = x + shape.at(n, c, 0);
      const scalar_t* g = grad + shape.at(n, c, 0);
      scalar_t* d = dx + shape.at(n, c, 0);
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) {
        const acc_t x_hat = (acc_t(p[l]) - m) * r;
        const acc_t gl = acc_t(g[l]) * derivative<ACT>(acc_t(p[l]) * scale + shift);
        d[l] = static_cast<scalar_t>(factor * (gl - mean_g - x_hat * mean_gx));
      }
    }
  });
}

template <typename scalar_t, int ACT>
void backward_channels_last(const Shape& shape, const scalar_t* grad, const scalar_t* x, scalar_t* dx,
                            const float* weight, const float* bias, const at::opmath_type<scalar_t>* mean,
                            const at::opmath_type<scalar_t>* var, at::opmath_type<scalar_t>* sum_g,
                            at::opmath_type<scalar_t>* sum_gx, bool training, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = shape.channels;
  for_each_item(shape, [&](int64_t c0, int64_t c1, int64_t segment) {
    const int64_t width = c1 - c0, begin = segment * shape.count(), end = begin + shape.count();
    acc_t m[kBlock], r[kBlock], scale[kBlock], shift[kBlock], factor[kBlock], sg[kBlock] = {}, sgx[kBlock] = {};
    for (int64_t k = 0; k < width; ++k) {
      const BackwardChannel<acc_t> ch(mean[segment * C + c0 + k], var[segment * C + c0 + k], eps, weight, bias, c0 + k);
      m[k] = ch.mean, r[k] = ch.rstd, scale[k] = ch.scale, shift[k] = ch.shift, factor[k] = ch.factor;
    }
    for (int64_t pos = begin; pos < end; ++pos) {
      const scalar_t* p = x + pos * C + c0;
      const scalar_t* g = grad + pos * C + c0;
#pragma omp simd
      for (int64_t k = 0; k < width; ++k) {
        const acc_t x_hat = (acc_t(p[k]) - m[k]) * r[k];
        const acc_t gk = acc_t(g[k]) * derivative<ACT>(acc_t(p[k]) * scale[k] + shift[k]);
        sg[k] += gk;
        sgx[k] += gk * x_hat;
      }
    }
    acc_t mean_g[kBlock], mean_gx[kBlock];
    for (int64_t k = 0; k < width; ++k) {
      sum_g[segment * C + c0 + k] = sg[k];
      sum_gx[segment * C + c0 + k] = sgx[k];
      mean_g[k] = training ? sg[k] / acc_t(shape.count()) : acc_t(0);
      mean_gx[k] = training ? sgx[k] / acc_t(shape.count()) : acc_t(0);
    }
    for (int64_t pos = begin; pos < end; ++pos) {
      const scalar_t* p = x + pos * C + c0;
      const scalar_t* g = grad + pos * C + c0;
      scalar_t* d = dx + pos * C + c0;
#pragma omp simd
      for (int64_t k = 0; k < width; ++k) {
        const acc_t x_hat = (acc_t(p[k]) - m[k]) * r[k];
        const acc_t gk = acc_t(g[k]) * derivative<ACT>(acc_t(p[k]) * scale[k] + shift[k]);
        d[k] = static_cast<scalar_t>(factor[k] * (gk - mean_g[k] - x_hat * mean_gx[k]));
      }
    }
  });
}

template <typename scalar_t, int ACT>
void forward_kernel(const Shape& shape, const scalar_t* x, scalar_t* y, const float* weight, const float* bias,
                    at::opmath_type<scalar_t>* mean, at::opmath_type<scalar_t>* var, bool given, double eps) {
  (shape.channels_last ? forward_channels_last<scalar_t, ACT> : forward_channels_first<scalar_t, ACT>)(
      shape, x, y, weight, bias, mean, var, given, eps);
}

template <typename scalar_t, int ACT>
void backward_kernel(const Shape& shape, const scalar_t* grad, const scalar_t* x, scalar_t* dx, const float* weight,
                     const float* bias, const at::opmath_type<scalar_t>* mean, const at::opmath_type<scalar_t>* var,
                     at::opmath_type<scalar_t>* sum_g, at::opmath_type<scalar_t>* sum_gx, bool training, double eps) {
  (shape.channels_last ? backward_channels_last<scalar_t, ACT> : backward_channels_first<scalar_t, ACT>)(
      shape, grad, x, dx, weight, bias, mean, var, sum_g, sum_gx, training, eps);
}

// x as [N, C, L] in a layout the kernels read: its own when dense channels-first (contiguous) or
// channels-last (4-D or 5-D), else a contiguous copy. Returns the (possibly copied) x and the shape.
std::tuple<at::Tensor, Shape> as_kernel_layout(const at::Tensor& x, int64_t num_segments) {
  TORCH_CHECK(x.dim() >= 2, "segmented_batch_norm (cpu): x must be [S*b, C, *], got ", x.dim(), " dimensions");
  TORCH_CHECK(num_segments >= 1 && x.size(0) % num_segments == 0, "segmented_batch_norm (cpu): a batch of ",
              x.size(0), " rows does not split into ", num_segments, " equal segments");
  const int64_t channels = x.size(1);
  int64_t spatial = 1;
  for (int64_t d = 2; d < x.dim(); ++d) spatial *= x.size(d);
  // A tensor that is both (size-1 dimensions) counts as channels-first: the two formulas agree.
  const bool first = x.is_contiguous();
  const bool last = !first && ((x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
                               (x.dim() == 5 && x.is_contiguous(at::MemoryFormat::ChannelsLast3d)));
  Shape shape{num_segments, x.size(0) / num_segments, channels, spatial, last};
  return {first || last ? x : x.contiguous(), shape};
}

// The kernels' float32 view of an optional per-channel parameter (nullptr when absent).
at::Tensor parameter(const std::optional<at::Tensor>& t, const at::Tensor& x, const char* name) {
  if (!t.has_value()) return at::Tensor();
  TORCH_CHECK(t->device().is_cpu(), "segmented_batch_norm (cpu): ", name, " must be a CPU tensor");
  TORCH_CHECK(t->dim() == 1 && t->size(0) == x.size(1), "segmented_batch_norm (cpu): ", name, " must be [C] = [",
              x.size(1), "], got ", t->sizes());
  return t->to(at::kFloat).contiguous();
}

const float* pointer(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// [S, C] statistics in dtype, a new contiguous tensor (custom-op outputs never alias inputs).
at::Tensor statistics(const at::Tensor& t, int64_t segments, int64_t channels, at::ScalarType dtype, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == segments && t.size(1) == channels, "segmented_batch_norm (cpu): ", name,
              " must be [S, C] = [", segments, ", ", channels, "], got ", t.sizes());
  return t.to(dtype, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

template <typename Call>
void dispatch_activation(Activation activation, const Call& call) {
  switch (activation) {
    case kRelu: call(std::integral_constant<int, kRelu>()); break;
    case kSilu: call(std::integral_constant<int, kSilu>()); break;
    default: call(std::integral_constant<int, kNone>());
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> segmented_batch_norm_forward_cpu(
    const at::Tensor& x_in, int64_t num_segments, const std::optional<at::Tensor>& weight_in,
    const std::optional<at::Tensor>& bias_in, double eps, const std::optional<at::Tensor>& mean_in,
    const std::optional<at::Tensor>& var_in, std::string activation_name) {
  TORCH_CHECK(x_in.device().is_cpu(), "segmented_batch_norm (cpu): x must be a CPU tensor, got ", x_in.device());
  TORCH_CHECK(mean_in.has_value() == var_in.has_value(), "segmented_batch_norm (cpu): give both mean and var, or neither");
  const Activation activation = parse_activation(activation_name);
  auto [x, shape] = as_kernel_layout(x_in, num_segments);
  const at::Tensor weight = parameter(weight_in, x, "weight"), bias = parameter(bias_in, x, "bias");
  const at::ScalarType stats_type = at::toOpMathType(x.scalar_type());
  const bool given = mean_in.has_value();
  at::Tensor mean = given ? statistics(*mean_in, num_segments, shape.channels, stats_type, "mean")
                          : at::empty({num_segments, shape.channels}, x.options().dtype(stats_type));
  at::Tensor var = given ? statistics(*var_in, num_segments, shape.channels, stats_type, "var") : at::empty_like(mean);
  at::Tensor y = at::empty_strided(x.sizes(), x.strides(), x.options());
  if (x.numel() == 0) return {y, mean, var};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "segmented_batch_norm_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_activation(activation, [&](auto act) {
      forward_kernel<scalar_t, decltype(act)::value>(shape, x.const_data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                                     pointer(weight), pointer(bias), mean.data_ptr<acc_t>(),
                                                     var.data_ptr<acc_t>(), given, eps);
    });
  });
  return {y, mean, var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> segmented_batch_norm_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_in, const std::optional<at::Tensor>& weight_in,
    const std::optional<at::Tensor>& bias_in, const at::Tensor& mean_in, const at::Tensor& var_in, double eps,
    int64_t num_segments, std::string activation_name, bool training) {
  TORCH_CHECK(x_in.device().is_cpu() && grad_in.device().is_cpu(), "segmented_batch_norm (cpu): CPU tensors only");
  TORCH_CHECK(grad_in.sizes() == x_in.sizes(), "segmented_batch_norm (cpu): grad must have x's shape ", x_in.sizes(),
              ", got ", grad_in.sizes());
  const Activation activation = parse_activation(activation_name);
  auto [x, shape] = as_kernel_layout(x_in, num_segments);
  // The upstream gradient in x's layout and dtype (a copy only when it differs: an expanded one, say).
  at::Tensor grad = grad_in;
  if (grad.strides() != x.strides() || grad.scalar_type() != x.scalar_type()) {
    grad = at::empty_strided(x.sizes(), x.strides(), x.options()).copy_(grad_in);
  }
  const at::Tensor weight = parameter(weight_in, x, "weight"), bias = parameter(bias_in, x, "bias");
  const at::ScalarType stats_type = at::toOpMathType(x.scalar_type());
  const at::Tensor mean = statistics(mean_in, num_segments, shape.channels, stats_type, "mean");
  const at::Tensor var = statistics(var_in, num_segments, shape.channels, stats_type, "var");
  at::Tensor dx = at::empty_strided(x.sizes(), x.strides(), x.options());
  at::Tensor sum_g = at::zeros({num_segments, shape.channels}, x.options().dtype(stats_type));
  at::Tensor sum_gx = at::zeros_like(sum_g);
  if (x.numel() == 0) return {dx, sum_g, sum_gx};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "segmented_batch_norm_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_activation(activation, [&](auto act) {
      backward_kernel<scalar_t, decltype(act)::value>(
          shape, grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
          pointer(weight), pointer(bias), mean.const_data_ptr<acc_t>(), var.const_data_ptr<acc_t>(),
          sum_g.data_ptr<acc_t>(), sum_gx.data_ptr<acc_t>(), training, eps);
    });
  });
  return {dx, sum_g, sum_gx};
}

}  // namespace

TORCH_LIBRARY_IMPL(vaenas, CPU, m) {
  m.impl("segmented_batch_norm_forward", &segmented_batch_norm_forward_cpu);
  m.impl("segmented_batch_norm_backward", &segmented_batch_norm_backward_cpu);
}

}  // namespace vaenas
