#include "kernels/nb101_enumerate.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace vaenas::kernels {

namespace {

// ---- MD5 (RFC 1321), written from the specification ------------------------------------------

constexpr uint32_t kMd5Shift[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

// floor(|sin(i + 1)| * 2^32), i = 0..63
constexpr uint32_t kMd5Sine[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

inline uint32_t rotate_left(uint32_t x, uint32_t s) { return (x << s) | (x >> (32 - s)); }

void md5_block(uint32_t state[4], const uint8_t block[64]) {
  uint32_t words[16];
  for (int i = 0; i < 16; ++i) {  // little-endian words, independent of the host's byte order
    words[i] = uint32_t(block[4 * i]) | (uint32_t(block[4 * i + 1]) << 8) |
               (uint32_t(block[4 * i + 2]) << 16) | (uint32_t(block[4 * i + 3]) << 24);
  }
  uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
  // One loop per round (instead of one loop with a branch per step) lets the compiler unroll them
  // with constant word indices: 2x faster, and md5 is most of the enumeration's time.
  auto step = [&](uint32_t f, int i, int g) {
    f += a + kMd5Sine[i] + words[g];
    a = d;
    d = c;
    c = b;
    b += rotate_left(f, kMd5Shift[i]);
  };
  for (int i = 0; i < 16; ++i) step((b & c) | (~b & d), i, i);
  for (int i = 16; i < 32; ++i) step((d & b) | (~d & c), i, (5 * i + 1) % 16);
  for (int i = 32; i < 48; ++i) step(b ^ c ^ d, i, (3 * i + 5) % 16);
  for (int i = 48; i < 64; ++i) step(c ^ (b | ~d), i, (7 * i) % 16);
  state[0] += a;
  state[1] += b;
  state[2] += c;
  state[3] += d;
}

constexpr char kHexDigits[] = "0123456789abcdef";

char* write_hex(const uint8_t digest[16], char* out) {
  for (int i = 0; i < 16; ++i) {
    *out++ = kHexDigits[digest[i] >> 4];
    *out++ = kHexDigits[digest[i] & 15];
  }
  return out;
}

using Digest = std::array<uint8_t, 16>;

// Insertion sort of at most 7 digests. Byte order of digests == lexicographic order of their
// lower-case hex strings, which is what Python's sorted() applies to hexdigest()s.
void sort_digests(Digest* digests, int count) {
  for (int i = 1; i < count; ++i) {
    const Digest digest = digests[i];
    int j = i - 1;
    for (; j >= 0 && std::memcmp(digests[j].data(), digest.data(), 16) > 0; --j) digests[j + 1] = digests[j];
    digests[j + 1] = digest;
  }
}

// ---- the cheap 64-bit stand-in of the official hash ------------------------------------------

inline uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline uint64_t absorb(uint64_t state, uint64_t value) { return mix64(state ^ mix64(value)); }

constexpr uint64_t kSeparator = 0x7c7c7c7c7c7c7c7cULL;  // plays the '|' of the official string

void sort_small(uint64_t* values, int count) {  // insertion sort: at most 6 values
  for (int i = 1; i < count; ++i) {
    uint64_t value = values[i];
    int j = i - 1;
    for (; j >= 0 && values[j] > value; --j) values[j + 1] = values[j];
    values[j + 1] = value;
  }
}

// A cell as row bit masks: bit j of rows[i] is the edge i -> j.
using RowMasks = std::array<uint8_t, kNb101MaxVertices>;

// Same refinement as hash_module (degrees and label, then n rounds over the sorted in- and
// out-neighbour values and the own value, then the sorted multiset), with 64-bit mixing instead
// of md5 of hex strings. Both are injective in the same information up to collisions, so they
// split the cells into the same classes; md5 is computed only for one cell per class.
uint64_t cell_key(const RowMasks& rows, const int8_t* labels, int n) {
  uint64_t hashes[kNb101MaxVertices], next[kNb101MaxVertices], neighbours[kNb101MaxVertices];
  for (int v = 0; v < n; ++v) {
    int in_degree = 0;
    for (int w = 0; w < v; ++w) in_degree += (rows[w] >> v) & 1;
    int out_degree = __builtin_popcount(rows[v]);
    hashes[v] = mix64((uint64_t(out_degree) << 16) | (uint64_t(in_degree) << 8) | uint8_t(labels[v] + 8));
  }
  for (int round = 0; round < n; ++round) {
    for (int v = 0; v < n; ++v) {
      uint64_t state = 0;
      int count = 0;
      for (int w = 0; w < v; ++w) {
        if ((rows[w] >> v) & 1) neighbours[count++] = hashes[w];
      }
      sort_small(neighbours, count);
      for (int k = 0; k < count; ++k) state = absorb(state, neighbours[k]);
      state = absorb(state, kSeparator);
      count = 0;
      for (int w = v + 1; w < n; ++w) {
        if ((rows[v] >> w) & 1) neighbours[count++] = hashes[w];
      }
      sort_small(neighbours, count);
      for (int k = 0; k < count; ++k) state = absorb(state, neighbours[k]);
      state = absorb(state, kSeparator);
      next[v] = absorb(state, hashes[v]);
    }
    std::copy(next, next + n, hashes);
  }
  sort_small(hashes, n);
  uint64_t state = uint64_t(n);
  for (int v = 0; v < n; ++v) state = absorb(state, hashes[v]);
  return state;
}

// Labels of labeling number `index` in itertools.product order (vertex 1 most significant).
void labeling(int64_t index, int n, int8_t* labels) {
  labels[0] = kNb101InputLabel;
  labels[n - 1] = kNb101OutputLabel;
  for (int v = n - 2; v >= 1; --v) {
    labels[v] = int8_t(index % kNb101NumOps);
    index /= kNb101NumOps;
  }
}

// Adjacency matrices of n vertices with no dangling vertex and at most max_edges edges, in the
// order of generate_graph.py: bit x + y(y-1)/2 of the mask is the edge x -> y (gen_is_edge_fn).
std::vector<RowMasks> full_dags(int n, int max_edges) {
  std::vector<RowMasks> dags;
  if (n < 2 || n > kNb101MaxVertices) return dags;  // also tells GCC the masks stay in bounds
  const int num_pairs = n * (n - 1) / 2;
  for (uint32_t bits = 0; bits < (1u << num_pairs); ++bits) {
    if (__builtin_popcount(bits) > max_edges) continue;
    RowMasks rows{};
    uint8_t columns[kNb101MaxVertices] = {};
    for (int y = 1; y < n; ++y) {
      for (int x = 0; x < y; ++x) {
        if ((bits >> (x + y * (y - 1) / 2)) & 1) {
          rows[x] |= uint8_t(1u << y);
          columns[y] |= uint8_t(1u << x);
        }
      }
    }
    bool full = true;
    for (int v = 0; v < n - 1 && full; ++v) full = rows[v] != 0;
    for (int v = 1; v < n && full; ++v) full = columns[v] != 0;
    if (full) dags.push_back(rows);
  }
  return dags;
}

}  // namespace

void md5(const uint8_t* data, size_t length, uint8_t digest[16]) {
  uint32_t state[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  size_t offset = 0;
  for (; offset + 64 <= length; offset += 64) md5_block(state, data + offset);
  // Tail: the rest, the 0x80 marker, zeros up to 56 mod 64, the bit length (little-endian).
  uint8_t tail[128] = {};
  const size_t rest = length - offset;
  std::memcpy(tail, data + offset, rest);
  tail[rest] = 0x80;
  const size_t tail_length = rest + 1 + 8 <= 64 ? 64 : 128;
  const uint64_t bit_length = uint64_t(length) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_length - 8 + i] = uint8_t(bit_length >> (8 * i));
  for (size_t block = 0; block < tail_length; block += 64) md5_block(state, tail + block);
  for (int i = 0; i < 4; ++i) {
    for (int k = 0; k < 4; ++k) digest[4 * i + k] = uint8_t(state[i] >> (8 * k));
  }
}

std::string md5_hex(const uint8_t digest[16]) {
  std::string hex(32, '0');
  write_hex(digest, hex.data());
  return hex;
}

void nb101_fingerprint(const uint8_t* matrix, const int8_t* labels, int n, uint8_t digest[16]) {
  if (n < 1 || n > kNb101MaxVertices) throw std::invalid_argument("nb101_fingerprint: n must be in [1, 7]");
  std::array<Digest, kNb101MaxVertices> hashes, next, in_neighbours, out_neighbours;
  // Room for the longest round string: 6 + 6 neighbour hex digests, two '|', the own digest.
  char text[(2 * kNb101MaxVertices + 1) * 32 + 16];
  for (int v = 0; v < n; ++v) {
    int in_degree = 0, out_degree = 0;
    for (int w = 0; w < n; ++w) {
      in_degree += matrix[w * n + v] != 0;
      out_degree += matrix[v * n + w] != 0;
    }
    // str((out_degree, in_degree, label)) of a Python tuple of ints
    const int length = std::snprintf(text, sizeof(text), "(%d, %d, %d)", out_degree, in_degree, int(labels[v]));
    md5(reinterpret_cast<const uint8_t*>(text), size_t(length), hashes[v].data());
  }
  for (int round = 0; round < n; ++round) {
    for (int v = 0; v < n; ++v) {
      int in_count = 0, out_count = 0;
      for (int w = 0; w < n; ++w) {
        if (matrix[w * n + v]) in_neighbours[in_count++] = hashes[w];
        if (matrix[v * n + w]) out_neighbours[out_count++] = hashes[w];
      }
      sort_digests(in_neighbours.data(), in_count);
      sort_digests(out_neighbours.data(), out_count);
      char* end = text;
      for (int k = 0; k < in_count; ++k) end = write_hex(in_neighbours[k].data(), end);
      *end++ = '|';
      for (int k = 0; k < out_count; ++k) end = write_hex(out_neighbours[k].data(), end);
      *end++ = '|';
      end = write_hex(hashes[v].data(), end);
      md5(reinterpret_cast<const uint8_t*>(text), size_t(end - text), next[v].data());
    }
    hashes = next;
  }
  sort_digests(hashes.data(), n);
  // str(sorted(hashes)) of a Python list of str: ['h1', 'h2', ...]
  char* end = text;
  *end++ = '[';
  for (int v = 0; v < n; ++v) {
    if (v > 0) {
      *end++ = ',';
      *end++ = ' ';
    }
    *end++ = '\'';
    end = write_hex(hashes[v].data(), end);
    *end++ = '\'';
  }
  *end++ = ']';
  md5(reinterpret_cast<const uint8_t*>(text), size_t(end - text), digest);
}

bool nb101_arch_fingerprint(const int64_t* tokens, uint8_t digest[16]) {
  constexpr int V = kNb101MaxVertices;
  RowMasks rows{};  // bit j of rows[i]: the edge i -> j
  int bit = 0;
  for (int i = 0; i < V; ++i) {
    for (int j = i + 1; j < V; ++j) {
      if (tokens[bit++] != 0) rows[i] |= uint8_t(1u << j);
    }
  }
  // Edges only go from lower to higher vertices, so one pass in vertex order finds everything
  // reachable from the input, and one pass in reverse order everything that reaches the output.
  uint32_t from_input = 1u;
  for (int v = 0; v < V; ++v) {
    if ((from_input >> v) & 1) from_input |= rows[v];
  }
  if (!((from_input >> (V - 1)) & 1)) {
    std::memset(digest, 0, 16);
    return false;
  }
  uint32_t to_output = 1u << (V - 1);
  for (int v = V - 2; v >= 0; --v) {
    if (rows[v] & to_output) to_output |= 1u << v;
  }
  const uint32_t kept_mask = from_input & to_output;  // holds the input and the output

  int kept[V];
  int n = 0;
  for (int v = 0; v < V; ++v) {
    if ((kept_mask >> v) & 1) kept[n++] = v;
  }
  uint8_t matrix[V * V] = {};
  int8_t labels[V];
  for (int a = 0; a < n; ++a) {
    const int v = kept[a];
    labels[a] = v == 0 ? kNb101InputLabel : v == V - 1 ? kNb101OutputLabel : int8_t(tokens[kNb101NumEdgeBits + v - 1]);
    for (int b = a + 1; b < n; ++b) matrix[a * n + b] = (rows[v] >> kept[b]) & 1;
  }
  nb101_fingerprint(matrix, labels, n, digest);
  return true;
}

Nb101Cells nb101_enumerate(int max_vertices, int max_edges) {
  if (max_vertices < 2 || max_vertices > kNb101MaxVertices) {
    throw std::invalid_argument("nb101_enumerate: max_vertices must be in [2, 7], got " +
                                std::to_string(max_vertices));
  }
  if (max_edges < 0) {
    throw std::invalid_argument("nb101_enumerate: max_edges must be >= 0, got " + std::to_string(max_edges));
  }
  constexpr int V = kNb101MaxVertices;
  Nb101Cells cells;
  for (int n = 2; n <= max_vertices; ++n) {
    const std::vector<RowMasks> dags = full_dags(n, max_edges);
    int64_t num_labelings = 1;
    for (int v = 0; v < n - 2; ++v) num_labelings *= kNb101NumOps;
    const int64_t total = int64_t(dags.size()) * num_labelings;  // 1.16M for n = 7

    // (key, enumeration index): sorting puts each class together, its first-met cell first.
    std::vector<std::pair<uint64_t, int64_t>> keyed(total);
#pragma omp parallel for schedule(static)
    for (int64_t index = 0; index < total; ++index) {
      int8_t labels[V];
      labeling(index % num_labelings, n, labels);
      keyed[index] = {cell_key(dags[index / num_labelings], labels, n), index};
    }
    std::sort(keyed.begin(), keyed.end());
    std::vector<int64_t> kept;
    for (int64_t i = 0; i < total; ++i) {
      if (i == 0 || keyed[i].first != keyed[i - 1].first) kept.push_back(keyed[i].second);
    }
    std::sort(kept.begin(), kept.end());

    const int64_t first = cells.size(), count = int64_t(kept.size());
    cells.matrices.resize((first + count) * V * V, 0);
    cells.labels.resize((first + count) * V, kNb101PaddingLabel);
    cells.num_vertices.resize(first + count, n);
    cells.fingerprints.resize((first + count) * 16);
    // md5 dominates the run time (57 digests per cell for n = 7), so it is computed in parallel
    // and only for the unique cells.
#pragma omp parallel for schedule(dynamic, 256)
    for (int64_t c = 0; c < count; ++c) {
      const RowMasks& rows = dags[kept[c] / num_labelings];
      uint8_t* padded = cells.matrices.data() + (first + c) * V * V;
      int8_t* labels = cells.labels.data() + (first + c) * V;
      uint8_t matrix[V * V] = {};
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
          matrix[i * n + j] = (rows[i] >> j) & 1;
          padded[i * V + j] = matrix[i * n + j];
        }
      }
      labeling(kept[c] % num_labelings, n, labels);
      nb101_fingerprint(matrix, labels, n, cells.fingerprints.data() + (first + c) * 16);
    }
  }
  return cells;
}

}  // namespace vaenas::kernels
