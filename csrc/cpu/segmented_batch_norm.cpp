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
// for y = act(x * scale + shift). Backward: z = w * x_hat + b recomputed, g = grad * act'(z);
// one pass for the sums of g and g * x_hat, one for dx. Per-segment sums are returned; dweight
// and dbias are their sums over segments (done in Python).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

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
  if constexpr (ACT == kRelu) return z > T(0) ? z : T(0);
  if constexpr (ACT == kSilu) return z / (T(1) + std::exp(-z));
  return z;
}

// d act / dz; relu's is 0 at z = 0, as torch.relu's backward.
template <int ACT, typename T>
inline T derivative(T z) {
  if constexpr (ACT == kRelu) return z > T(0) ? T(1) : T(0);
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

// Calls f(offset, c - c0) over every element of channels [c0, c1) of a segment, innermost along
// the contiguous dimension of the layout.
template <typename F>
inline void for_each_element(const Shape& shape, int64_t segment, int64_t c0, int64_t c1, const F& f) {
  for (int64_t n = segment * shape.rows; n < (segment + 1) * shape.rows; ++n) {
    if (shape.channels_last) {
      for (int64_t l = 0; l < shape.spatial; ++l) {
        const int64_t base = shape.at(n, 0, l);
        for (int64_t c = c0; c < c1; ++c) f(base + c, c - c0);
      }
    } else {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t base = shape.at(n, c, 0);
        for (int64_t l = 0; l < shape.spatial; ++l) f(base + l, c - c0);
      }
    }
  }
}

template <typename scalar_t, int ACT>
void forward_kernel(const Shape& shape, const scalar_t* x, scalar_t* y, const float* weight, const float* bias,
                    at::opmath_type<scalar_t>* mean, at::opmath_type<scalar_t>* var, bool given, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  for_each_item(shape, [&](int64_t c0, int64_t c1, int64_t segment) {
    const int64_t width = c1 - c0;
    acc_t* item_mean = mean + segment * shape.channels + c0;
    acc_t* item_var = var + segment * shape.channels + c0;
    if (!given) {
      std::vector<acc_t> sums(width, acc_t(0)), squares(width, acc_t(0));
      for_each_element(shape, segment, c0, c1, [&](int64_t i, int64_t k) { sums[k] += acc_t(x[i]); });
      for (int64_t k = 0; k < width; ++k) item_mean[k] = sums[k] / acc_t(shape.count());
      for_each_element(shape, segment, c0, c1, [&](int64_t i, int64_t k) {
        const acc_t centred = acc_t(x[i]) - item_mean[k];
        squares[k] += centred * centred;
      });
      for (int64_t k = 0; k < width; ++k) item_var[k] = squares[k] / acc_t(shape.count());
    }
    std::vector<acc_t> scale(width), shift(width);
    for (int64_t k = 0; k < width; ++k) {
      scale[k] = acc_t(1) / std::sqrt(item_var[k] + acc_t(eps));
      if (weight != nullptr) scale[k] *= acc_t(weight[c0 + k]);
      shift[k] = -item_mean[k] * scale[k] + (bias != nullptr ? acc_t(bias[c0 + k]) : acc_t(0));
    }
    for_each_element(shape, segment, c0, c1, [&](int64_t i, int64_t k) {
      y[i] = static_cast<scalar_t>(activate<ACT>(acc_t(x[i]) * scale[k] + shift[k]));
    });
  });
}

template <typename scalar_t, int ACT>
void backward_kernel(const Shape& shape, const scalar_t* grad, const scalar_t* x, scalar_t* dx, const float* weight,
                     const float* bias, const at::opmath_type<scalar_t>* mean, const at::opmath_type<scalar_t>* var,
                     at::opmath_type<scalar_t>* sum_g, at::opmath_type<scalar_t>* sum_gx, bool training, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  for_each_item(shape, [&](int64_t c0, int64_t c1, int64_t segment) {
    const int64_t width = c1 - c0, stats = segment * shape.channels + c0;
    std::vector<acc_t> rstd(width), w(width), b(width), sg(width, acc_t(0)), sgx(width, acc_t(0));
    for (int64_t k = 0; k < width; ++k) {
      rstd[k] = acc_t(1) / std::sqrt(var[stats + k] + acc_t(eps));
      w[k] = weight != nullptr ? acc_t(weight[c0 + k]) : acc_t(1);
      b[k] = bias != nullptr ? acc_t(bias[c0 + k]) : acc_t(0);
    }
    const acc_t* m = mean + stats;
    // g and x_hat of element i (channel k of the item)
    auto gradient = [&](int64_t i, int64_t k, acc_t& x_hat) {
      x_hat = (acc_t(x[i]) - m[k]) * rstd[k];
      return acc_t(grad[i]) * derivative<ACT>(x_hat * w[k] + b[k]);
    };
    for_each_element(shape, segment, c0, c1, [&](int64_t i, int64_t k) {
      acc_t x_hat;
      const acc_t g = gradient(i, k, x_hat);
      sg[k] += g;
      sgx[k] += g * x_hat;
    });
    std::vector<acc_t> mean_g(width), mean_gx(width), factor(width);
    for (int64_t k = 0; k < width; ++k) {
      sum_g[stats + k] = sg[k];
      sum_gx[stats + k] = sgx[k];
      mean_g[k] = training ? sg[k] / acc_t(shape.count()) : acc_t(0);
      mean_gx[k] = training ? sgx[k] / acc_t(shape.count()) : acc_t(0);
      factor[k] = w[k] * rstd[k];
    }
    for_each_element(shape, segment, c0, c1, [&](int64_t i, int64_t k) {
      acc_t x_hat;
      const acc_t g = gradient(i, k, x_hat);
      dx[i] = static_cast<scalar_t>(factor[k] * (g - mean_g[k] - x_hat * mean_gx[k]));
    });
  });
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
