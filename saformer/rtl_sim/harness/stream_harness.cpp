// stream_harness: a compiled Verilator bench for any one-in, one-out valid/ready block of the
// library, for bulk runs (saformer/rtl_sim/harness.py builds and drives it).
//
// The top is chosen at compile time (-DTOP_CLASS=V<top> -DTOP_HEADER="V<top>.h"). Ports, as every
// block has them: clk, rst, s_valid, s_ready, s_data, m_valid, m_ready, m_data.
//
//   stream_harness --ports                       prints "<in words> <out words>" (32-bit words per beat)
//   stream_harness IN OUT CYCLES N_OUT P_IDLE P_BACKPRESSURE SEED TIMEOUT
//     IN      input beats, each <in words> little-endian uint32 (word 0 = bits 31..0)
//     OUT     the first N_OUT output beats, same layout
//     CYCLES  the cycle (uint64) each output beat was accepted
//     P_BACKPRESSURE  below 1: the chance of a cycle without m_ready; an integer P >= 1: m_ready on
//             the cycles that are multiples of P only
//   and prints one JSON line: beats in / out, first input cycle, first output and total (as the
//   cocotb bench counts them: from the first accepted input beat), cycles simulated, seconds.
//
// Timing is the cocotb bench's: with the clock low, the bench sets valid / data / ready, the model
// settles, transfers are noted (valid && ready), then the rising edge. Idles and back-pressure are
// drawn from a seeded xorshift generator, so a run repeats exactly.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "verilated.h"
#include TOP_HEADER

namespace {

template <typename T>
constexpr std::size_t words_of() { return (sizeof(T) + 3) / 4; }

template <typename T>
void put(T& port, const uint32_t* w) {
    if constexpr (sizeof(T) <= 4) {
        port = static_cast<T>(w[0]);
    } else {
        port = static_cast<T>(static_cast<uint64_t>(w[0]) | (static_cast<uint64_t>(w[1]) << 32));
    }
}
template <std::size_t N>
void put(VlWide<N>& port, const uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}

template <typename T>
void get(const T& port, uint32_t* w) {
    const uint64_t v = port;
    w[0] = static_cast<uint32_t>(v);
    if constexpr (sizeof(T) > 4) w[1] = static_cast<uint32_t>(v >> 32);
}
template <std::size_t N>
void get(const VlWide<N>& port, uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
}

struct Rng {  // xorshift64*: the stall pattern of a seed, the same on every machine
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 2685821657736338717ULL + 0x9E3779B97F4A7C15ULL) { if (!s) s = 1; }
    double uniform() {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        return static_cast<double>((s * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
    }
};

}  // namespace

int main(int argc, char** argv) {
    auto ctx = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<TOP_CLASS>(ctx.get());
    using InPort = std::remove_reference_t<decltype(top->s_data)>;
    using OutPort = std::remove_reference_t<decltype(top->m_data)>;
    constexpr std::size_t IN_WORDS = words_of<InPort>();
    constexpr std::size_t OUT_WORDS = words_of<OutPort>();
    if (argc == 2 && std::strcmp(argv[1], "--ports") == 0) {
        std::printf("%zu %zu\n", IN_WORDS, OUT_WORDS);
        return 0;
    }
    if (argc != 9) {
        std::fprintf(stderr, "usage: %s IN OUT CYCLES N_OUT P_IDLE P_BACKPRESSURE SEED TIMEOUT | --ports\n", argv[0]);
        return 2;
    }
    const uint64_t n_out = std::strtoull(argv[4], nullptr, 10);
    const double p_idle = std::atof(argv[5]), p_bp = std::atof(argv[6]);
    Rng rng(std::strtoull(argv[7], nullptr, 10));
    const uint64_t timeout = std::strtoull(argv[8], nullptr, 10);

    std::vector<uint32_t> in;
    if (FILE* f = std::fopen(argv[1], "rb")) {
        uint32_t buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 4, 4096, f)) > 0) in.insert(in.end(), buf, buf + n);
        std::fclose(f);
    } else {
        std::fprintf(stderr, "cannot read '%s'\n", argv[1]);
        return 2;
    }
    if (in.size() % IN_WORDS) {
        std::fprintf(stderr, "'%s' holds %zu words, not a whole number of %zu-word beats\n", argv[1], in.size(), IN_WORDS);
        return 2;
    }
    const uint64_t n_in = in.size() / IN_WORDS;
    std::vector<uint32_t> out(n_out * OUT_WORDS);
    std::vector<uint64_t> out_cycle(n_out);

    const auto t0 = std::chrono::steady_clock::now();
    top->clk = 0; top->rst = 1; top->s_valid = 0; top->m_ready = 0;
    top->eval();
    for (int i = 0; i < 3; ++i) { top->clk = 1; top->eval(); top->clk = 0; top->eval(); }
    top->rst = 0;

    uint64_t sent = 0, received = 0, cycle = 0, first_in = 0;
    bool presenting = false;
    while (received < n_out) {
        if (cycle > timeout) {
            std::fprintf(stderr, "timeout after %llu cycles: %llu of %llu input beats in, %llu of %llu out\n",
                         (unsigned long long)cycle, (unsigned long long)sent, (unsigned long long)n_in,
                         (unsigned long long)received, (unsigned long long)n_out);
            return 3;
        }
        if (sent < n_in && (presenting || p_idle <= 0.0 || rng.uniform() >= p_idle)) {
            presenting = true;
            put(top->s_data, &in[sent * IN_WORDS]);
            top->s_valid = 1;
        } else {
            top->s_valid = 0;
        }
        // P_BACKPRESSURE >= 1: ready on every P-th cycle only (a fixed pattern the accelerator's
        // cycle model can follow); below 1: the probability of a cycle without ready
        const bool ready = p_bp >= 1.0 ? cycle % static_cast<uint64_t>(p_bp) == 0
                                       : (p_bp <= 0.0 || rng.uniform() >= p_bp);
        top->m_ready = ready;
        top->clk = 0;  // the falling edge and this cycle's inputs settle in one evaluation
        top->eval();
        if (presenting && top->s_ready) {
            if (sent == 0) first_in = cycle;
            ++sent;
            presenting = false;
        }
        if (ready && top->m_valid) {
            get(top->m_data, &out[received * OUT_WORDS]);
            out_cycle[received++] = cycle;
        }
        top->clk = 1;
        top->eval();
        ++cycle;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    top->final();

    FILE* fo = std::fopen(argv[2], "wb");
    FILE* fc = std::fopen(argv[3], "wb");
    if (!fo || !fc) {
        std::fprintf(stderr, "cannot write the output files\n");
        return 2;
    }
    std::fwrite(out.data(), 4, out.size(), fo);
    std::fwrite(out_cycle.data(), 8, out_cycle.size(), fc);
    std::fclose(fo);
    std::fclose(fc);
    std::printf("{\"beats_in\": %llu, \"beats_out\": %llu, \"first_in\": %llu, \"first_output\": %lld, "
                "\"total\": %lld, \"cycles\": %llu, \"seconds\": %.6f}\n",
                (unsigned long long)sent, (unsigned long long)received, (unsigned long long)first_in,
                n_out ? (long long)(out_cycle[0] - first_in) : -1LL,
                n_out ? (long long)(out_cycle[n_out - 1] - first_in + 1) : -1LL, (unsigned long long)cycle, seconds);
    return 0;
}
