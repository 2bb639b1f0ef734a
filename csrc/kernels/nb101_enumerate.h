// Exhaustive enumeration of the NAS-Bench-101 cell space and the official graph hash of
// 26-token cells (torch-free kernel layer).
//
// A cell is a DAG of at most 7 vertices (vertex 0 the input, the last one the output) whose
// intermediate vertices carry one of the 3 op labels (0 conv3x3-bn-relu, 1 conv1x1-bn-relu,
// 2 maxpool3x3). Like nasbench's generate_graph.py, the
// enumeration visits, per vertex count n, every upper-triangular adjacency matrix with no
// dangling vertex and at most `max_edges` edges, and every labeling, and keeps one cell per
// equivalence class of the NAS-Bench-101 graph hash (graph_util.py::hash_module). With
// max_vertices = 7 and max_edges = 9 this gives the published 423,624 cells.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vaenas::kernels {

constexpr int kNb101MaxVertices = 7;
constexpr int kNb101NumOps = 3;
constexpr int8_t kNb101InputLabel = -1;
constexpr int8_t kNb101OutputLabel = -2;
constexpr int8_t kNb101PaddingLabel = -3;

// RFC 1321 MD5 of `length` bytes; writes the 16-byte digest.
void md5(const uint8_t* data, size_t length, uint8_t digest[16]);

// Lower-case hex of a 16-byte digest (32 characters), as Python's hexdigest().
std::string md5_hex(const uint8_t digest[16]);

// The official NAS-Bench-101 fingerprint (graph_util.py::hash_module) of an n-vertex cell:
// `matrix` is n*n row-major 0/1, `labels` n labels (-1 input, ops, -2 output). The cell should be
// pruned (no dangling vertex), as the dataset hashes pruned cells.
void nb101_fingerprint(const uint8_t* matrix, const int8_t* labels, int n, uint8_t digest[16]);

// The 26-token encoding of vaenas' NAS-Bench-101 space (vaenas/spaces/nasbench101_graph.py):
// tokens 0..20 are the edge bits of the 7x7 upper triangle, row-major ((0,1), (0,2), ..., (5,6));
// tokens 21..25 the op labels (0, 1, 2) of vertices 1..5. Vertex 0 is the input, vertex 6 the output.
constexpr int kNb101NumEdgeBits = kNb101MaxVertices * (kNb101MaxVertices - 1) / 2;  // 21
constexpr int kNb101NumTokens = kNb101NumEdgeBits + kNb101MaxVertices - 2;          // 26

// The official fingerprint of one 26-token cell, as vaenas.spaces.nasbench101_graph.arch_hash:
// the cell is pruned (nasbench ModelSpec._prune: vertices not on an input -> output path are
// removed) and the pruned cell hashed with nb101_fingerprint. A nonzero edge token is an edge;
// op tokens must be 0, 1 or 2 (not checked here). The edge count is not limited: cells with more
// than 9 edges are hashed like any other. Returns false and writes 16 zero bytes when the output is
// not reachable from the input (such a cell has no hash); an md5 digest is all zero with
// probability 2^-128, so zero marks these rows unambiguously in practice.
bool nb101_arch_fingerprint(const int64_t* tokens, uint8_t digest[16]);

// The unique cells, each padded to 7 vertices: cell c occupies
//   matrices[c*49 .. c*49+48]   7x7 row-major 0/1, its n vertices in the top-left n x n block;
//   labels[c*7 .. c*7+6]        -1 input, op labels, -2 output at vertex n-1, -3 padding;
//   num_vertices[c]             n;
//   fingerprints[c*16 .. +15]   md5 digest of the official hash.
// Cells are ordered by vertex count, then by the order in which generate_graph.py meets them
// (adjacency bit mask, then labeling), and each class is represented by the first cell met.
struct Nb101Cells {
  std::vector<uint8_t> matrices;
  std::vector<int8_t> labels;
  std::vector<int64_t> num_vertices;
  std::vector<uint8_t> fingerprints;
  int64_t size() const { return static_cast<int64_t>(num_vertices.size()); }
};

// Throws std::invalid_argument unless 2 <= max_vertices <= 7 and max_edges >= 0.
// Runs in parallel with OpenMP when compiled with it.
Nb101Cells nb101_enumerate(int max_vertices, int max_edges);

}  // namespace vaenas::kernels
