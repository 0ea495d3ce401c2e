// SAFormer's stateful spiking layers for hls4ml (io_parallel), written to the integer contract
// (docs/integer_contract.md). Both keep state across calls of the top function: the model is
// called once per time step, and the state resets by itself at the first of every T calls, so a
// caller streams samples back to back, T calls each.
#ifndef NNET_SAFORMER_H_
#define NNET_SAFORMER_H_

#include "nnet_common.h"

namespace nnet {

struct saformer_lif_config {
    static const unsigned n_in = 1;
    static const unsigned time_steps = 1;
    static constexpr double theta = 1.0;
    typedef ap_fixed<17, 9> accum_t;  // membrane + drive, one bit wider than the membrane
};

// LIF with tau = 2:  H = (V + X) >> 1 (floor);  S = H >= theta;  V = S ? 0 : H.
// H fits the membrane type (the sum has one bit more, the shift removes it): no saturation.
template <class data_T, class res_T, typename CONFIG_T>
void saformer_lif(data_T x[CONFIG_T::n_in], res_T s[CONFIG_T::n_in]) {
    static data_T v[CONFIG_T::n_in];
    static unsigned t = 0;
    const data_T theta = CONFIG_T::theta;
    #pragma HLS ARRAY_PARTITION variable=v complete
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        data_T v_i = (t == 0) ? data_T(0) : v[i];
        typename CONFIG_T::accum_t sum = v_i + x[i];
        data_T h = sum >> 1;  // arithmetic shift of the raw bits: floor
        bool fire = h >= theta;
        s[i] = fire;
        v[i] = fire ? data_T(0) : h;
    }
    t = (t + 1 == CONFIG_T::time_steps) ? 0 : t + 1;
}

struct saformer_spike_count_config {
    static const unsigned n_tokens = 1;
    static const unsigned n_chan = 1;
    static const unsigned time_steps = 1;
};

// Spike counts per channel, summed over the tokens and over the time steps of a sample so far
// (channels last: x[token * n_chan + c]). The head's logits are valid at the sample's last step.
template <class data_T, class res_T, typename CONFIG_T>
void saformer_spike_count(data_T x[CONFIG_T::n_tokens * CONFIG_T::n_chan], res_T count[CONFIG_T::n_chan]) {
    static res_T total[CONFIG_T::n_chan];
    static unsigned t = 0;
    #pragma HLS ARRAY_PARTITION variable=total complete
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS UNROLL
        res_T acc = (t == 0) ? res_T(0) : total[c];
        for (unsigned n = 0; n < CONFIG_T::n_tokens; n++) {
            #pragma HLS UNROLL
            acc += x[n * CONFIG_T::n_chan + c];
        }
        total[c] = acc;
        count[c] = acc;
    }
    t = (t + 1 == CONFIG_T::time_steps) ? 0 : t + 1;
}

}  // namespace nnet

#endif
