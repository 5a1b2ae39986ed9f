// bench_kernels: single-thread speed of the active ISA's matrix x vector (the decode path) per weight type.
//
//     bench_kernels [TYPE ...] [--k 2048] [--n 1] [--l2-kib 192] [--dram-mib 256] [--seconds 0.3] [--packed]
//                   [--m ROWS] [--threads T]
//
// For each type the dispatched gemm multiplies m rows of k weights with n quantized tokens, once with a
// matrix that fits in L2 (compute speed) and once with one far larger than the last-level cache (the speed
// of streaming the weights from memory, as decode does). With --packed, types that have packed kernels
// (kernels/dispatch.h PackFn) get a second line: the same matrix packed into groups of kPackRows rows and
// multiplied group by group with packed_gemm, as matmul would (GB/s counts the packed bytes). Weights are
// random bytes with sane fp16 scales (the kernels' speed does not depend on the values); tokens go through
// the dispatched quantize_row. Prints the best of several timed runs as GMAC/s (weights x tokens per second)
// and weight GB/s. Not a test: the C++ test build compiles it so that it cannot rot. --m fixes the large
// matrix's rows (e.g. --k 8192 --m 8192: the 8192 x 8192 GEMV bench/nf4_gemv.py compares with bitsandbytes);
// --threads splits the packed groups over a thread pool, as matmul does.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/threadpool.h"
#include "format/common.h"
#include "format/legacy.h"
#include "format/types.h"
#include "kernels/dispatch.h"

using namespace qrt;

namespace {

// Offsets of the fp16 scales in a block (random bytes there could be NaN/Inf, which may be slow paths).
std::vector<size_t> scale_offsets(TypeId t) {
    switch (t) {
        case TypeId::Q4_0:
            return {0};
        case TypeId::Q4_1:
            return {0, 2};
        case TypeId::Q5_0:
            return {0};
        case TypeId::Q5_1:
            return {0, 2};
        case TypeId::Q8_0:
            return {0};
        case TypeId::Q2_K:
            return {80, 82};
        case TypeId::Q3_K:
            return {108};
        case TypeId::Q4_K:
            return {0, 2};
        case TypeId::Q5_K:
            return {0, 2};
        case TypeId::Q6_K:
            return {208};
        default:
            return {};
    }
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Result {
    double gmac, gbs;
};

// packed: time pack->packed_gemm over the packed matrix instead of gemm (m is then a multiple of kPackRows).
Result run(const TypeTraits& t, kernels::GemmFn gemm, const kernels::CpuKernels* packed, int64_t k, int64_t m,
           int n, double seconds, std::mt19937_64& rng, ThreadPool* pool = nullptr) {
    const size_t row_bytes = size_t(k / t.block_size) * t.type_size;
    std::vector<uint8_t> w(size_t(m) * row_bytes);
    if (t.quantize_tensor && !t.dequantize_row) {  // NF4: a real tensor, its state after the blocks
        uint64_t nbytes = 0;
        tensor_nbytes(t, k, m, &nbytes);
        w.resize(nbytes);
        std::normal_distribution<float> normal;
        std::vector<float> wf(size_t(m * k));
        for (float& v : wf) v = normal(rng);
        t.quantize_tensor(wf.data(), k, m, w.data(), 2);
    } else {
        for (size_t i = 0; i < w.size(); i += 8) {
            const uint64_t r = rng();
            std::memcpy(w.data() + i, &r, std::min<size_t>(8, w.size() - i));
        }
        const std::vector<size_t> offs = scale_offsets(t.id);
        std::uniform_real_distribution<float> u(0.5f, 2.0f);
        for (size_t b = 0; b < w.size(); b += t.type_size)
            for (size_t o : offs) {
                const half_bits h = fp32_to_fp16(u(rng) * 1e-3f);
                std::memcpy(w.data() + b + o, &h, 2);
            }
    }
    const TypeTraits& p = traits(t.vec_dot_type);
    const size_t act_bytes = size_t(k / p.block_size) * p.type_size;
    std::vector<uint8_t> act(size_t(n) * act_bytes);
    std::normal_distribution<float> normal;
    std::vector<float> x(static_cast<size_t>(k));
    for (int j = 0; j < n; ++j) {
        for (float& v : x) v = normal(rng);
        kernels::quantize_row(p.id)(x.data(), act.data() + size_t(j) * act_bytes, k);
    }
    // The activations' per-block sums for packed kernels that need them (Q4_0, Q5_0: matmul computes them
    // once per token, outside the timed kernel).
    std::vector<int32_t> sums;
    if (packed && packed->pack_needs_sums) {
        sums.resize(size_t(n) * size_t(k / 32));
        for (int j = 0; j < n; ++j)
            q8_0_block_sums(act.data() + size_t(j) * act_bytes, k, sums.data() + size_t(j) * size_t(k / 32));
    }
    const int32_t* sp = sums.empty() ? nullptr : sums.data();
    std::vector<float> c(size_t(m) * size_t(n));
    constexpr int R = kernels::kPackRows;
    const size_t group_bytes = packed ? size_t(k / t.block_size) * packed->pack_block_bytes : 0;
    if (packed) {
        std::vector<uint8_t> groups(size_t(m / R) * group_bytes);
        for (int64_t g = 0; g < m / R; ++g)
            if (packed->pack_tensor)
                packed->pack_tensor(k, w.data(), m, g * R, groups.data() + size_t(g) * group_bytes);
            else
                packed->pack(k, w.data() + size_t(g * R) * row_bytes, row_bytes,
                             groups.data() + size_t(g) * group_bytes);
        w = std::move(groups);
    }
    double best = 1e30, sink = 0;
    const double start = now_s();
    int runs = 0;
    while (runs < 3 || now_s() - start < seconds) {
        const double t0 = now_s();
        if (packed) {
            auto groups = [&](int64_t g0, int64_t g1, int) {
                for (int64_t g = g0; g < g1; ++g)
                    packed->packed_gemm(k, w.data() + size_t(g) * group_bytes, act.data(), act_bytes, sp,
                                        k / 32, c.data() + g * R, m, n);
            };
            if (pool)
                pool->parallel_for(m / R, [&](int64_t g0, int64_t g1, int i) { groups(g0, g1, i); });
            else
                groups(0, m / R, 0);
        } else {
            gemm(k, w.data(), row_bytes, act.data(), act_bytes, c.data(), m, m, n);
        }
        best = std::min(best, now_s() - t0);
        sink += c[size_t(runs) % c.size()];
        ++runs;
    }
    if (sink == 12345.678) std::printf(" ");  // keep the results alive
    return {double(m) * double(k) * n / best * 1e-9, double(w.size()) / best * 1e-9};
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> types;
    int64_t k = 2048;
    int n = 1;
    bool with_packed = false;
    int64_t m_fixed = 0;
    int threads = 1;
    double l2_kib = 192, dram_mib = 256, seconds = 0.3;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() { return i + 1 < argc ? std::atof(argv[++i]) : 0.0; };
        if (a == "--k") {
            k = int64_t(next());
        } else if (a == "--n") {
            n = int(next());
        } else if (a == "--l2-kib") {
            l2_kib = next();
        } else if (a == "--dram-mib") {
            dram_mib = next();
        } else if (a == "--seconds") {
            seconds = next();
        } else if (a == "--m") {
            m_fixed = int64_t(next());
        } else if (a == "--threads") {
            threads = int(next());
        } else if (a == "--packed") {
            with_packed = true;
        } else {
            types.push_back(a);
        }
    }
    if (types.empty()) types = {"Q4_K", "Q5_K", "Q6_K"};
    std::printf("isa %s, k=%lld, n=%d, single thread (packed: %d); best of runs over %.2f s\n",
                isa_name(active_isa()), (long long)k, n, threads, seconds);
    std::printf("%-6s %14s %10s %14s %10s\n", "type", "L2 GMAC/s", "GB/s", "DRAM GMAC/s", "GB/s");
    std::mt19937_64 rng(1);
    for (const std::string& name : types) {
        const TypeTraits* t = find_type(name);
        const kernels::GemmFn gemm = t ? kernels::gemm(t->id) : nullptr;
        const kernels::CpuKernels* packed = t && with_packed ? kernels::packed(t->id) : nullptr;
        if (!gemm && !packed) {
            std::printf("%-6s no gemm on this ISA\n", name.c_str());
            continue;
        }
        const double row_bytes = double(k / t->block_size) * double(t->type_size);
        constexpr int64_t R = kernels::kPackRows;
        const int64_t m_l2 = std::max<int64_t>(R, int64_t(l2_kib * 1024 / row_bytes) / R * R);
        const int64_t m_dram =
            m_fixed > 0 ? m_fixed / R * R
                        : std::max<int64_t>(R, int64_t(dram_mib * 1024 * 1024 / row_bytes) / R * R);
        if (gemm) {  // NF4 has packed kernels only
            const Result l2 = run(*t, gemm, nullptr, k, m_l2, n, seconds, rng);
            const Result dram = run(*t, gemm, nullptr, k, m_dram, n, seconds, rng);
            std::printf("%-6s %14.2f %10.2f %14.2f %10.2f\n", name.c_str(), l2.gmac, l2.gbs, dram.gmac,
                        dram.gbs);
        }
        if (packed) {
            ThreadPool pool(threads);
            const Result pl2 = run(*t, gemm, packed, k, m_l2, n, seconds, rng, &pool);
            const Result pdram = run(*t, gemm, packed, k, m_dram, n, seconds, rng, &pool);
            std::printf("%-6s %14.2f %10.2f %14.2f %10.2f\n", (name + "p").c_str(), pl2.gmac, pl2.gbs,
                        pdram.gmac, pdram.gbs);
        }
    }
    return 0;
}
