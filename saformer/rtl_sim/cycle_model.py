"""The accelerator's exact cycle model: the cycle at which every beat of every stream of a generated
top moves, computed from the golden model's spikes without the RTL, equal to the Verilator run of
a stall-free stream of images (every output beat, so every image's cycles).

Why an exact model is possible. Every block of the library is a small valid/ready machine in which
neither side withdraws an offer: a producer's valid stays up until its beat moves, and a
consumer's ready, once up for a beat, stays up until that beat moves (their headers' boundaries).
So a beat moves at the first cycle both sides allow:

    xfer[k] = max(offer[k], accept[k])

and each side's earliest cycle is a max of earlier transfers plus constants (max-plus algebra),
read off the block's registers. The only data that enters is where an event encoder finds non-zero
elements (the per-layer spike counts of the golden traces): it sets how many events an engine
takes and so how long it is busy. Everything else (LIFs, pools, adds, the SASA core, forks, joins,
FIFOs, gearboxes) moves a fixed number of beats whose timing follows its neighbours'.

Each block's equations are written next to its model below, in the RTL's own terms; blocks.py holds
the stall-free special cases (the headers' cycle models), which these reduce to when nothing waits.

How it is solved. Each independent chain of a block (a FIFO's push and pop sides, a skid buffer's
output register, an engine's takes and drains) is a Python generator that computes its transfers
in order and, when it needs a transfer not computed yet, waits for it; a scheduler resumes whatever
can go on. Every transfer is computed once, so the cost follows the beats moved, not the cycles
simulated. A wait that can never be served (a true deadlock of the hardware, or a chain of the
model split wrongly) is reported with the chains that wait.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from saformer.errors import ConfigError

EMPTY, NORMAL, LAST = 0, 1, 2  # an engine's input events: a group without spikes, a spike, a group's last spike


class CycleModelError(RuntimeError):
    """The model's chains wait on each other (a deadlock) or a block kind has no model."""


class _Seq(array):
    """The cycles of one kind of transfer, in beat order, and the chains waiting for more of them.
    An int64 array, not a list: 8 bytes a cycle instead of a list slot and an int object (~36), the
    model's memory (about 2.9 cycles kept per transfer), at the same speed."""

    __slots__ = ("name", "waiters")

    def __new__(cls, name: str) -> "_Seq":
        return super().__new__(cls, "q")

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiters: list = []


Chain = Iterator[_Seq]  # a generator that yields the sequence it waits on


class _Solver:
    def __init__(self) -> None:
        self.ready: deque = deque()
        self.names: dict[int, str] = {}  # id(chain) -> its name, for a deadlock's report
        self.seqs: list[_Seq] = []

    def seq(self, name: str) -> _Seq:
        s = _Seq(name)
        self.seqs.append(s)
        return s

    def put(self, s: _Seq, cycle: int) -> None:
        s.append(cycle)
        if s.waiters:
            self.ready.extend(s.waiters)
            s.waiters = []

    def chain(self, name: str, gen: Chain) -> None:
        self.names[id(gen)] = name
        self.ready.append(gen)

    def entries(self) -> int:
        return sum(len(s) for s in self.seqs)

    def run(self, max_entries: int | None = None) -> bool:
        """Run every chain to its end (True), or stop once the sequences hold more than
        ``max_entries`` cycles (False): what is computed by then is final, since every transfer
        depends on earlier ones only."""
        ready, live = self.ready, len(self.names)
        popleft = ready.popleft
        steps = 0
        while ready:
            gen = popleft()
            try:
                s = next(gen)
            except StopIteration:
                live -= 1
                continue
            s.waiters.append(gen)
            steps += 1
            if max_entries is not None and not steps % 8192 and self.entries() > max_entries:
                return False
        if live:
            stuck = [f"{self.names[id(g)]} waits on {s.name}[{len(s)}]" for s in self.seqs for g in s.waiters][:8]
            raise CycleModelError(f"cycle model: {live} chains wait on each other (a deadlock): " + "; ".join(stuck))
        return True


# ---- the chains: one per independent recurrence of a block --------------------------------------
# Conventions: a transfer at cycle c is valid && ready sampled at the clock edge that ends cycle c;
# a register written then shows its value from cycle c + 1. offer[k] is the first cycle at which
# the producer shows beat k (valid stays up until it moves); accept[k] the consumer's first cycle.

def _source(sv: _Solver, n: int, offer: _Seq, xfer: _Seq) -> Chain:
    """The harness's input: valid whenever beats remain, the next beat the cycle after a transfer."""
    if n:
        sv.put(offer, 0)
    for k in range(1, n):
        while len(xfer) < k:
            yield xfer
        sv.put(offer, xfer[k - 1] + 1)


def _sink(sv: _Solver, n: int, offer: _Seq, xfer: _Seq, every: int = 1) -> Chain:
    """The harness's output: m_ready on every ``every``-th cycle (1: held high), a beat moves at the
    first such cycle it is offered."""
    for k in range(n):
        while len(offer) <= k:
            yield offer
        sv.put(xfer, -(-offer[k] // every) * every)


def _register(sv: _Solver, n: int, in_offer: _Seq, in_xfer: _Seq, out_offer: _Seq, out_xfer: _Seq,
              produces: np.ndarray | None = None) -> Chain:
    """One output register, s_ready = !m_valid || m_ready (lif_unit, sat_add, maxpool): a beat is
    taken once the last output made is leaving; its output (where it makes one: a pool's window
    corner, ``produces`` cycling over a frame) shows the next cycle."""
    made = 0
    period = len(produces) if produces is not None else 0
    for k in range(n):
        while len(in_offer) <= k:
            yield in_offer
        t = in_offer[k]
        if made:
            while len(out_xfer) < made:
                yield out_xfer
            t = max(t, out_xfer[made - 1])
        sv.put(in_xfer, t)
        if produces is None or produces[k % period]:
            sv.put(out_offer, t + 1)
            made += 1


def _skid_accept(u: _Seq, v: _Seq, m: int) -> Iterator[_Seq]:
    """The first cycle a skid buffer (s_ready = its skid register is empty) takes its beat m, from
    its input transfers u and output transfers v (``yield from`` it: it waits for v[m-2]): the cycle
    after beat m-1 entered, and after beat m-2 left, for beat m-1 waits in the skid register only
    while beat m-2 holds the output register."""
    while len(v) < m - 1:
        yield v
    t = u[m - 1] + 1 if m else 0
    return max(t, v[m - 2] + 1) if m >= 2 else t


def _skid_in(sv: _Solver, n: int, in_offer: _Seq, u: _Seq, v: _Seq) -> Chain:
    """skid_buffer's input side (s_ready = the skid register is empty): beat k enters at
    max(offer, _skid_accept)."""
    for k in range(n):
        while len(in_offer) <= k:
            yield in_offer
        sv.put(u, max(in_offer[k], (yield from _skid_accept(u, v, k))))


def _shown(sv: _Solver, n: int, src: _Seq, delay: int, out_offer: _Seq, out_xfer: _Seq,
           loaded: _Seq | None = None) -> Chain:
    """An output fed in order: beat k shows ``delay`` cycles after src[k], and not before the cycle
    after beat k-1 left (``loaded`` gets the cycle before it shows). A skid buffer's output register
    shows a beat the cycle after it entered (delay 1); a stream_fifo's head and an engine's output
    FIFO, two cycles after its write or drain read (the memory, then the register)."""
    for k in range(n):
        while len(src) <= k:
            yield src
        t = src[k] + delay
        if k:
            while len(out_xfer) < k:
                yield out_xfer
            t = max(t, out_xfer[k - 1] + 1)
        if loaded is not None:
            sv.put(loaded, t - 1)
        sv.put(out_offer, t)


def _fifo_push(sv: _Solver, n: int, depth: int, in_offer: _Seq, in_xfer: _Seq, pop: _Seq) -> Chain:
    """stream_fifo's tail: s_ready = fewer than DEPTH beats in memory, so beat k waits for the pop
    of beat k - DEPTH into the output register (its head: _shown, two cycles after the write)."""
    for k in range(n):
        while len(in_offer) <= k:
            yield in_offer
        t = in_offer[k]
        if k >= depth:
            while len(pop) <= k - depth:
                yield pop
            t = max(t, pop[k - depth] + 1)
        sv.put(in_xfer, t)


def _fork(sv: _Solver, n: int, s_offer: _Seq, s_xfer: _Seq, u0: _Seq, v0: _Seq, u1: _Seq, v1: _Seq) -> Chain:
    """stream_fork: each output's skid buffer takes the beat when it can (an eager fork); the input
    moves when both have it."""
    for k in range(n):
        while len(s_offer) <= k:
            yield s_offer
        t0 = max(s_offer[k], (yield from _skid_accept(u0, v0, k)))
        t1 = max(s_offer[k], (yield from _skid_accept(u1, v1, k)))
        sv.put(u0, t0)
        sv.put(u1, t1)
        sv.put(s_xfer, max(t0, t1))


def _join(sv: _Solver, n: int, a_offer: _Seq, a_xfer: _Seq, b_offer: _Seq, b_xfer: _Seq, u: _Seq, v: _Seq) -> Chain:
    """stream_join: both inputs move together into the output skid buffer."""
    for k in range(n):
        while len(a_offer) <= k:
            yield a_offer
        while len(b_offer) <= k:
            yield b_offer
        t = max(a_offer[k], b_offer[k], (yield from _skid_accept(u, v, k)))
        sv.put(u, t)
        sv.put(a_xfer, t)
        sv.put(b_xfer, t)


def _frame_repeat(sv: _Solver, frames: int, beats: int, times: int, s_offer: _Seq, s_xfer: _Seq,
                  u: _Seq, v: _Seq) -> Chain:
    """frame_repeat: a frame passes through while it is written (s_ready = writing && the skid
    buffer's ready), then TIMES - 1 replays, each read registered and issued when the read register
    is free or leaving; the next frame is taken the cycle after the last replayed beat left."""
    m, k, start = 0, 0, 0
    for _ in range(frames):
        for _ in range(beats):
            while len(s_offer) <= k:
                yield s_offer
            t = max(s_offer[k], start, (yield from _skid_accept(u, v, m)))
            sv.put(s_xfer, t)
            sv.put(u, t)
            m, k = m + 1, k + 1
        if times > 1:
            issue = t + 1
            for _ in range((times - 1) * beats):
                t = max(issue + 1, (yield from _skid_accept(u, v, m)))
                sv.put(u, t)
                m, issue = m + 1, t
            start = t + 1


def _gearbox_in(sv: _Solver, groups: int, k_in: int, k_out: int, s_offer: _Seq, s_xfer: _Seq, moved: _Seq,
                out_xfer: _Seq) -> Chain:
    """lane_gearbox's fill register: K_IN beats a group; the group moves to the drain register once
    the previous group's last output beat leaves, and the next group's first beat is taken after."""
    k = 0
    for g in range(groups):
        for i in range(k_in):
            while len(s_offer) <= k:
                yield s_offer
            t = s_offer[k]
            if i == 0 and g:
                t = max(t, moved[g - 1] + 1)
            sv.put(s_xfer, t)
            k += 1
        if g:
            while len(out_xfer) < g * k_out:
                yield out_xfer
            t = max(t, out_xfer[g * k_out - 1])
        sv.put(moved, t)


def _gearbox_out(sv: _Solver, groups: int, k_out: int, moved: _Seq, out_offer: _Seq, out_xfer: _Seq) -> Chain:
    """lane_gearbox's drain register: a group's first beat shows the cycle after it moved in, each
    next beat the cycle after the one before left."""
    j = 0
    for g in range(groups):
        while len(moved) <= g:
            yield moved
        sv.put(out_offer, moved[g] + 1)
        j += 1
        for _ in range(k_out - 1):
            while len(out_xfer) < j:
                yield out_xfer
            sv.put(out_offer, out_xfer[j - 1] + 1)
            j += 1


def _encoder(sv: _Solver, counts: np.ndarray, ends: np.ndarray, s_offer: _Seq, s_xfer: _Seq, u: _Seq,
             v: _Seq) -> Chain:
    """event_encoder: a taken beat's non-zero lanes are peeled off one a cycle from the next cycle;
    the newest event waits in a register until the next one (or the group's end) says whether it
    is the last, so an event enters the skid buffer when its successor is peeled (if the skid
    buffer takes it then) or at the flush. The next beat is taken with the beat's last peel, or the
    cycle after a beat without events, or with the flush of a group's end."""
    accept, e, pending = 0, 0, False
    for b in range(len(counts)):
        while len(s_offer) <= b:
            yield s_offer
        t = max(s_offer[b], accept)
        sv.put(s_xfer, t)
        c = t + 1  # the first peel
        for _ in range(int(counts[b])):
            if pending:
                c = max(c, (yield from _skid_accept(u, v, e)))
                sv.put(u, c)
                e += 1
            pending = True
            c += 1
        if ends[b]:  # the flush: the pending event with `last`, or an empty group's one beat
            f = max(c, (yield from _skid_accept(u, v, e)))
            sv.put(u, f)
            e += 1
            pending = False
            accept = f
        else:
            accept = c - 1 if counts[b] else t + 1


def _engine_take(sv: _Solver, kinds: np.ndarray, busy: int, ev_offer: _Seq, ev_xfer: _Seq, start: _Seq,
                 drained: _Seq, latency: int | None = None) -> Chain:
    """syn_engine's accumulate side: a spike keeps it busy TAPS*CH cycles and the next event is taken
    in the last of them; a group's last spike (or its empty beat) starts the drain the cycle after,
    and no event is taken until the cycle after the drain's last read.

    ``latency``: the engine streams its weights (WEIGHT_PORT = 1) from a memory that shows a burst's
    first word that many cycles after its request (weight_stream_mem). The request of an event goes
    out the cycle it shows (o) and moves the next, so the event is taken at a >= o + 1 and its
    TAPS*CH words move from max(a + 1, o + 1 + latency) on, one a cycle (the burst before it has
    left by then: this event is taken no earlier than that burst's last word)."""
    ready, g = 0, 0
    for i in range(len(kinds)):
        while len(ev_offer) <= i:
            yield ev_offer
        o = ev_offer[i]
        a = max(o if latency is None else o + 1, ready)
        sv.put(ev_xfer, a)
        kind = kinds[i]
        last = a + busy if latency is None else max(a + 1, o + 1 + latency) + busy - 1  # its last update
        if kind == NORMAL:
            ready = last
            continue
        sv.put(start, last + 1 if kind == LAST else a + 1)
        while len(drained) <= g:
            yield drained
        ready = drained[g] + 1
        g += 1


def _engine_drain(sv: _Solver, groups: int, beats: int, start: _Seq, drained: _Seq, issue: _Seq,
                  out_xfer: _Seq) -> Chain:
    """syn_engine's drain reads, one a cycle from the drain's start, each only while its 4-deep
    output FIFO (with the read in flight) has room: read J waits for output beat J - 4 to leave."""
    j, last = 0, -1
    for g in range(groups):
        while len(start) <= g:
            yield start
        t = start[g]
        for _ in range(beats):
            t = max(t, last + 1)
            if j >= 4:
                while len(out_xfer) < j - 3:
                    yield out_xfer
                t = max(t, out_xfer[j - 4] + 1)
            sv.put(issue, t)
            last, j = t, j + 1
        sv.put(drained, last)


def _sasa_in(sv: _Solver, n: int, beats: int, s_offer: _Seq, s_xfer: _Seq, a_done: _Seq, b_done: _Seq) -> Chain:
    """sasa_core's input side: a beat a cycle while fewer than two steps are in flight (input done,
    output not), so step s waits for the output side to finish step s - 2."""
    for i in range(n):
        step, pos = divmod(i, beats)
        while len(s_offer) <= i:
            yield s_offer
        t = s_offer[i]
        if step >= 2 and pos == 0:
            while len(b_done) <= step - 2:
                yield b_done
            t = max(t, b_done[step - 2] + 1)
        sv.put(s_xfer, t)
        if pos == beats - 1:
            sv.put(a_done, t)


def _sasa_out(sv: _Solver, n: int, beats: int, a_done: _Seq, b_done: _Seq, y_offer: _Seq, y_xfer: _Seq) -> Chain:
    """sasa_core's output side: beat j of step s fires once the input of step s is done and LIF_o's
    drive register is free or leaving; the drive shows the cycle after."""
    for j in range(n):
        step, pos = divmod(j, beats)
        if pos == 0:
            while len(a_done) <= step:
                yield a_done
        t = a_done[step] + 1
        if j:
            while len(y_xfer) < j:
                yield y_xfer
            t = max(t, y_xfer[j - 1])
        sv.put(y_offer, t + 1)
        if pos == beats - 1:
            sv.put(b_done, t)


# ---- the top ------------------------------------------------------------------------------------
def _encoders(design) -> dict[str, dict[str, Any]]:
    """Every event encoder's parameters by the engine's node (defaults filled in)."""
    return {b["node"]: {"H": 1, "W": 1, "GROUP": 1, **b["params"]} for b in design.blocks if b["block"] == "event_encoder"}


def _group_beats(p: dict[str, Any]) -> int:
    return (p["H"] * p["W"] if p["KERNEL"] == 3 else p["GROUP"]) * p["IN"] // p["LANES"]


def encoder_counts(design, ex, x_int: np.ndarray, traces: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the model needs of the data: for every event encoder (by its engine's node), the
    non-zero lanes of each input beat, (images, beats per image). Computed batch by batch and
    concatenated along the images, so no run holds every layer's trace of every image."""
    from saformer.rtl_sim.balance import _engine_input

    out = {}
    for node, p in _encoders(design).items():
        x = np.asarray(_engine_input(ex, traces, x_int, ex.graph[node])) != 0
        out[node] = x.reshape(len(x_int), -1, p["LANES"]).sum(-1, dtype=np.int32)
    return out


@dataclass
class ModelRun:
    """The model's cycles: of every output beat (from the cycle the first pixel is taken), and per
    image as TopRun.cycles_per_image counts them (between consecutive images' last output beats)."""
    out_cycles: np.ndarray
    cycles_per_image: np.ndarray  # of the images modelled: all, or a prefix when max_entries stopped it
    transfers: int  # beats moved on all streams together: the model's work
    complete: bool = True  # False: stopped at max_entries, cycles_per_image covers the first images only


def model_top(design, ex, counts: dict[str, np.ndarray], ready_every: int = 1,
              max_entries: int | None = None) -> ModelRun:
    """The cycle of every output beat of ``design`` (saformer.rtl_sim.accel.generate_top) when
    images stream through it back to back with no input stalls, from their encoders' ``counts``
    (encoder_counts): equal to run_top's on those images, beat for beat. ``ready_every`` = K: the
    output is taken on every K-th cycle only (run_top's fixed back-pressure). ``max_entries``
    bounds the memory (8 bytes an entry, ~2.9 entries a transfer): the model stops there and
    gives the images finished by then, exact too (a beat never waits on a later one)."""
    if not isinstance(ready_every, int) or ready_every < 1:
        raise ConfigError(f"cycle model: ready_every must be a positive integer, got {ready_every!r}")
    encoders = _encoders(design)
    if set(counts) != set(encoders):
        raise ConfigError(f"cycle model: counts for {sorted(counts)}, but the design's encoders are {sorted(encoders)}")
    images = {len(c) for c in counts.values()}
    if len(images) != 1:
        raise ConfigError(f"cycle model: the encoders' counts cover different numbers of images: {sorted(images)}")
    images, t_steps = images.pop(), ex.cfg.time_steps
    sv = _Solver()
    offer = {w: sv.seq(f"{w}.offer") for w in design.streams}
    xfer = {w: sv.seq(f"{w}.xfer") for w in design.streams}

    def beats(wire: str) -> int:
        s = design.streams[wire]
        return images * s.beats_per_step * (1 if s.static else t_steps)

    inputs = {node: _encoder_input(encoders[node], c) for node, c in counts.items()}
    for b in design.blocks:
        kind, p, ports, name = b["block"], b["params"], b["ports"], b["instance"]
        node = ex.graph[b["node"]]
        if kind in ("lif_unit", "sat_add", "maxpool"):
            s, m = ports["s"], ports["m"]
            produces = None
            if kind == "maxpool":
                col = np.arange(p["W"])[None, :, None] % 2
                row = np.arange(p["H"])[:, None, None] % 2
                produces = np.broadcast_to((col & row).astype(bool), (p["H"], p["W"], p["C"] // p["LANES"])).reshape(-1)
            sv.chain(name, _register(sv, beats(s), offer[s], xfer[s], offer[m], xfer[m], produces))
        elif kind == "stream_fifo":
            s, m = ports["s"], ports["m"]
            pop = sv.seq(f"{name}.pop")
            sv.chain(f"{name}.push", _fifo_push(sv, beats(s), p["DEPTH"], offer[s], xfer[s], pop))
            sv.chain(f"{name}.pop", _shown(sv, beats(s), xfer[s], 2, offer[m], xfer[m], pop))
        elif kind == "fork_join" and "s0" not in ports:  # stream_fork
            s, m0, m1 = ports["s"], ports["m0"], ports["m1"]
            u0, u1 = sv.seq(f"{name}.u0"), sv.seq(f"{name}.u1")
            sv.chain(name, _fork(sv, beats(s), offer[s], xfer[s], u0, xfer[m0], u1, xfer[m1]))
            sv.chain(f"{name}.out0", _shown(sv, beats(s), u0, 1, offer[m0], xfer[m0]))
            sv.chain(f"{name}.out1", _shown(sv, beats(s), u1, 1, offer[m1], xfer[m1]))
        elif kind == "fork_join":  # stream_join
            s0, s1, m = ports["s0"], ports["s1"], ports["m"]
            u = sv.seq(f"{name}.u")
            sv.chain(name, _join(sv, beats(s0), offer[s0], xfer[s0], offer[s1], xfer[s1], u, xfer[m]))
            sv.chain(f"{name}.out", _shown(sv, beats(s0), u, 1, offer[m], xfer[m]))
        elif kind == "frame_repeat":
            s, m = ports["s"], ports["m"]
            u = sv.seq(f"{name}.u")
            frames = beats(s) // p["BEATS"]
            sv.chain(name, _frame_repeat(sv, frames, p["BEATS"], p["TIMES"], offer[s], xfer[s], u, xfer[m]))
            sv.chain(f"{name}.out", _shown(sv, frames * p["BEATS"] * p["TIMES"], u, 1, offer[m], xfer[m]))
        elif kind == "lane_gearbox":
            s, m = ports["s"], ports["m"]
            lcm = int(np.lcm(p["IN_LANES"], p["OUT_LANES"]))
            k_in, k_out = lcm // p["IN_LANES"], lcm // p["OUT_LANES"]
            groups = beats(s) // k_in
            moved = sv.seq(f"{name}.moved")
            sv.chain(f"{name}.in", _gearbox_in(sv, groups, k_in, k_out, offer[s], xfer[s], moved, xfer[m]))
            sv.chain(f"{name}.out", _gearbox_out(sv, groups, k_out, moved, offer[m], xfer[m]))
        elif kind == "event_encoder":
            s, m = ports["s"], ports["m"]
            e = inputs[node.name]
            u = sv.seq(f"{name}.u")
            sv.chain(name, _encoder(sv, e.counts, e.ends, offer[s], xfer[s], u, xfer[m]))
            sv.chain(f"{name}.out", _shown(sv, len(e.kinds), u, 1, offer[m], xfer[m]))
        elif kind == "syn_engine":
            s, m = ports["s"], ports["m"]
            e = inputs[node.name]
            ch = p["OUT"] // p["LANES"]
            taps = p["KERNEL"] ** 2
            pos = p["H"] * p["W"] if p["KERNEL"] == 3 else 1
            start, drained, issue = sv.seq(f"{name}.start"), sv.seq(f"{name}.drained"), sv.seq(f"{name}.issue")
            sv.chain(f"{name}.take", _engine_take(sv, e.kinds, taps * ch, offer[s], xfer[s], start, drained,
                                                  b.get("weight_latency")))
            sv.chain(f"{name}.drain", _engine_drain(sv, e.groups, pos * ch, start, drained, issue, xfer[m]))
            sv.chain(f"{name}.out", _shown(sv, e.groups * pos * ch, issue, 2, offer[m], xfer[m]))  # its output FIFO
        elif kind == "sasa_core":
            s, m = ports["s"], ports["m"]
            per_step = p["N"] * p["D"] // p["P"]
            n = beats(s)
            a_done, b_done = sv.seq(f"{name}.a_done"), sv.seq(f"{name}.b_done")
            y_offer, y_xfer = sv.seq(f"{name}.y.offer"), sv.seq(f"{name}.y.xfer")
            o_offer, u = sv.seq(f"{name}.o.offer"), sv.seq(f"{name}.u")
            sv.chain(f"{name}.in", _sasa_in(sv, n, per_step, offer[s], xfer[s], a_done, b_done))
            sv.chain(f"{name}.out", _sasa_out(sv, n, per_step, a_done, b_done, y_offer, y_xfer))
            sv.chain(f"{name}.lif_o", _register(sv, n, y_offer, y_xfer, o_offer, u))
            sv.chain(f"{name}.skid_in", _skid_in(sv, n, o_offer, u, xfer[m]))
            sv.chain(f"{name}.skid_out", _shown(sv, n, u, 1, offer[m], xfer[m]))
        else:
            raise CycleModelError(f"cycle model: no model of block '{kind}' ({name})")
    n_out = images * design.out_beats_per_image
    sv.chain("harness.in", _source(sv, beats(design.input_wire), offer[design.input_wire], xfer[design.input_wire]))
    sv.chain("harness.out", _sink(sv, n_out, offer[design.output_wire], xfer[design.output_wire], ready_every))
    complete = sv.run(max_entries)
    out = np.array(xfer[design.output_wire], dtype=np.int64)
    if complete and out.size != n_out:
        raise CycleModelError(f"cycle model: {out.size} output beats, expected {n_out}")
    out = out[:out.size - out.size % design.out_beats_per_image]  # whole images only
    if not out.size:
        raise CycleModelError(f"cycle model: max_entries={max_entries} is too few for one image")
    first_in = xfer[design.input_wire][0]
    ends = out[design.out_beats_per_image - 1::design.out_beats_per_image] - first_in + 1
    return ModelRun(out - first_in, np.diff(ends, prepend=0), sum(len(s) for s in xfer.values()), complete)


@dataclass
class _EncoderInput:
    counts: np.ndarray  # per input beat of the run, its non-zero lanes
    ends: np.ndarray  # per input beat, whether it ends a group
    kinds: np.ndarray  # per engine event: EMPTY, NORMAL or LAST
    groups: int


def _encoder_input(p: dict[str, Any], counts: np.ndarray) -> _EncoderInput:
    """An encoder's beats over the run -> its group ends and its engine's events: a group's spikes
    (the last one LAST), or one EMPTY beat for a group without."""
    per_group = np.asarray(counts).reshape(-1, _group_beats(p))
    ends = np.zeros(per_group.shape, dtype=bool)
    ends[:, -1] = True
    events = per_group.sum(axis=1)
    kinds = np.full(int(np.maximum(events, 1).sum()), NORMAL, dtype=np.int8)
    last = np.cumsum(np.maximum(events, 1)) - 1
    kinds[last] = np.where(events > 0, LAST, EMPTY)
    return _EncoderInput(per_group.reshape(-1), ends.reshape(-1), kinds, int(per_group.shape[0]))


def compare(model: ModelRun, run) -> dict[str, Any]:
    """The model against a harness run (TopRun): per-image cycles equal, image by image."""
    sim = np.asarray(run.cycles_per_image)
    diff = np.flatnonzero(model.cycles_per_image != sim)
    return {"images": int(sim.size), "exact": not diff.size, "mismatching_images": diff[:20].tolist(),
            "mismatching_count": int(diff.size)}

