/* Native forward-step loop of the asynchronous engine (CPU, float32), and its backward pass.
 *
 * Runs, for every sample of the batch, the forward steps of one time step that follow the input
 * frame, for networks whose spiking layers are each one nn.Linear feeding snn.Leaky or
 * snn.Synaptic neurons. The semantics and the floating-point arithmetic are exactly those of the
 * torch code in engine/torch_backend.py (its inference path with sparse deliveries); tests
 * compare the two bit for bit.
 *
 * Per sample and forward step:
 *   select   the pending sources with the F highest keys (ties: lower source index first), or
 *            all of them when at most F are pending;
 *   fill     (QueuedCarriers, `queued` given) queued zero outputs of hidden neurons fill the
 *            F - selected free slots, by the same keys: they leave the queue and deliver W * 0
 *            (no current, no evaluation: they matter for the gradient only);
 *   deliver  for each receiving layer, in layer order: cur[n] = sum over the selected sources j of
 *            that layer, in ascending j, of (wt[j][n] * value_j), starting from 0; plus the bias
 *            at the first delivery into the layer in this time step;
 *   settle   a sample with nothing pending whose unreached layers hold candidates (neurons that
 *            fire on the bias alone) reaches the lowest such layer with its bias only;
 *   integrate  evaluated = (cur != 0) or (first delivery and (full layer evaluation or
 *            candidate)); zero-reset
 *            neurons that already fired discard the current; acc += cur;
 *   fire     an evaluated neuron that has not fired yet fires if U - thr > 0, with
 *            U = decayed + acc [- sub] (Leaky) or U = decayed + (syn_decayed + acc) [- sub]
 *            [- U * r] (Synaptic); its spike joins the pending set (hidden layers) with a key
 *            given by the strategy; a silent evaluated hidden neuron queues a zero (`queued`).
 *
 * Training (engine/native_grad.py): the forward pass is the same loop. The backward pass runs
 * it again per time step with a tape (sa_tape_record: every delivery, filler, bias and, per
 * forward step and layer, U - thr of every neuron evaluated), computes the surrogate derivative
 * sigma'(U - thr) of each recorded value (snnTorch's atan, fast_sigmoid, sigmoid and
 * straight-through formulas; any other surrogate is left to the caller: sa_tape_x, sa_tape_sg),
 * and walks the tape in reverse (sa_tape_backward): the adjoint of each neuron's accumulated
 * current, of each pending and queued value, and of the weights, biases, membranes and inputs.
 *
 * Samples are independent: both passes run over blocks of samples on `threads` threads. The
 * backward pass uses a fixed number of blocks (SA_GRAD_BLOCKS, not the thread count), each with
 * its own weight-gradient buffers, which accumulate over the time steps and which the caller
 * sums in block order: gradients do not depend on `threads`.
 *
 * Compile with -ffp-contract=off (no fused multiply-add) so products and sums round as torch's.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SA_GRAD_BLOCKS 4

typedef struct {
    float key;
    int32_t idx;
} Item;

/* Higher key first; equal keys: lower index first (torch.sort(descending, stable=True)). */
static inline int item_before(const Item *a, const Item *b) {
    return a->key > b->key || (a->key == b->key && a->idx < b->idx);
}

/* Reorder items[0..n) so that its first k (0 < k < n) are the k highest keys (ties: lower
 * index first), in no particular order: the same set as the first k of a stable descending sort. */
static void select_top(Item *it, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, i = lo, j = hi;
        Item t;
        if (item_before(&it[mid], &it[lo])) { t = it[mid]; it[mid] = it[lo]; it[lo] = t; }
        if (item_before(&it[hi], &it[lo])) { t = it[hi]; it[hi] = it[lo]; it[lo] = t; }
        if (item_before(&it[hi], &it[mid])) { t = it[hi]; it[hi] = it[mid]; it[mid] = t; }
        const Item pivot = it[mid];
        while (i <= j) {
            while (item_before(&it[i], &pivot)) i++;
            while (item_before(&pivot, &it[j])) j--;
            if (i <= j) { t = it[i]; it[i] = it[j]; it[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static int by_int_asc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

enum { MODE_RANDOM = 0, MODE_MEMBRANE = 1, MODE_INDEX = 2 };

/* What stays fixed during one simulation (mirrored field by field, by name, by the ctypes
 * Structure KernelPlan in snntorch_async/engine/native.py; tests/test_native.py checks that the
 * two declarations agree). */
typedef struct {
    int64_t B, L, N, S;
    const int64_t *lay_off;   /* [L+1] neuron offsets into the [B, N] arrays */
    const int64_t *grp_off;   /* [G+1] source offsets into the [B, S] arrays */
    const int64_t *tgt_grp;   /* [L] group whose sources feed a layer, -1 for none */
    const int64_t *lay_grp;   /* [L] group fed by a layer's spikes, -1 for the output layer */
    const float *const *wt;   /* [L] transposed weights [in_l, n_l], contiguous */
    const float *const *bias; /* [L] bias [n_l] or NULL */
    const uint8_t *lay_sub;   /* [L] subtract reset: membrane = ... - sub */
    const uint8_t *lay_zero;  /* [L] zero reset: current after firing is discarded */
    const uint8_t *lay_syn;   /* [L] synaptic: membrane = decayed + (syn_decayed + acc) */
    const uint8_t *lay_rec;   /* [L] recurrent: the recurrent current joins after acc */
    const uint8_t *lay_zmul;  /* [L] zero reset as U - U * r (every kind but Leaky's) */
    const int64_t *sg_kind;   /* [L] surrogate derivative: 0 caller, 1 atan, 2 fast sigmoid,
                                 3 sigmoid, 4 straight through */
    const double *sg_param;   /* [L] its alpha / slope */
    const float *sync_thr;    /* [N] partial synchronisation: a neuron fires only once it has
                                 received more than sync_thr[k] synaptic events; NULL: off */
    const float *fan;         /* [S] non-zero fan-out of each source (synaptic operations) */
    const float *thr;         /* [N] threshold */
    int64_t mode;             /* the ordering: MODE_RANDOM, MODE_MEMBRANE or MODE_INDEX */
    int64_t F;                /* forward group size (>= 1; >= S: everything pending at once) */
    int64_t max_fs;           /* max forward steps per time step, -1 none */
    int64_t stop_k;           /* stop_on_output, -1 off */
    int64_t full_eval;        /* full layer evaluation */
    int64_t threads;          /* worker threads (>= 1) */
    int64_t per_eval;         /* tape: silent output evaluations carry gradient (QueuedCarriers) */
    int64_t layer_carriers;   /* LayerCarriers: a silent hidden neuron's zero rides with its
                                 layer's next delivery (this time step only) */
} sa_plan;

/* One time step's arrays (mirrored by the ctypes Structure KernelStep). */
typedef struct {
    const uint8_t *cand;      /* [B, N] candidates: fire on the bias alone, or NULL (none) */
    const float *frame_cur;   /* [B, n_0] the input frame's current into layer 0 (bias included),
                                 delivered in a first forward step; NULL: no input frame */
    const float *decayed;     /* [B, N] */
    const float *syn_decayed; /* [B, N] alpha * syn (read where lay_syn), or NULL (no synaptic) */
    const float *sub;         /* [B, N] reset * threshold (read where lay_sub), or NULL (none) */
    const float *zero_reset;  /* [B, N] the delayed reset r (read where lay_zmul) */
    const float *recurrent;   /* [B, N] the recurrent current V(spk[t-1]) (read where lay_rec) */
    const float *sync_counts; /* [B, N] events received before the forward steps (input frame,
                                 recurrence; with sync_thr), or NULL: none */
    float *acc;               /* [B, N] in/out: the step's accumulated current */
    uint8_t *fired;           /* [B, N] in/out */
    uint8_t *evald;           /* [B, N] in/out */
    float *spikes;            /* [B, N] in/out: the step's spike record */
    float *pend;              /* [B, S] in/out: pending spike values */
    float *key;               /* [B, S] in/out: keys of pending sources */
    float *prio;              /* [B, S] in/out: recorded membrane (MODE_MEMBRANE) */
    const float *noise;       /* [B, S] RANDOM: Exp(1) draws; MEMBRANE: jitter * U(0, 1) */
    float *clock;             /* [B] in/out (MODE_RANDOM) */
    uint8_t *reached;         /* [B, L] in/out */
    float *synops;            /* [B, L] in/out */
    int64_t *fsteps;          /* [B] in/out */
    int64_t *out_at;          /* [B] in/out: forward step of the first output spike, -1 none */
    uint8_t *queued;          /* [B, S] in/out: a hidden source's neuron has zeros queued
                                 (QueuedCarriers), or NULL (no queue) */
} sa_step;

/* The backward pass's arrays for one time step (mirrored by the ctypes Structure KernelGrad).
 * In: the adjoints of the step's outputs. Out: the adjoints of its inputs (zeroed by the caller;
 * g_wt and g_bias are accumulated into). */
typedef struct {
    const float *g_acc;       /* [B, N] adjoint of the accumulated current */
    const float *g_spikes;    /* [B, N] adjoint of the spike record */
    const float *g_pend;      /* [B, S] adjoint of the pending values after the step */
    const float *g_queued;    /* [B, S] adjoint of the queued zeros after the step, or NULL */
    const float *g_carried;   /* [B, S] adjoint of LayerCarriers' zeros left at the step's end,
                                 or NULL */
    float *g_x;               /* [B, N] out: sum over evaluations of the adjoint of U - thr */
    float *g_pend_in;         /* [B, S] out: adjoint of the pending values before the step */
    float *g_queued_in;       /* [B, S] out: adjoint of the queued zeros before the step, or NULL */
    float *g_frame;           /* [B, n_0] out: adjoint of frame_cur, or NULL */
    float *const *g_wt;       /* [nblk * L] out [in_l, n_l]: adjoint of wt, accumulated per block
                                 of samples (sa_grad_blocks) */
    float *const *g_bias;     /* [nblk * L] out [n_l] or NULL: adjoint of the bias, the same */
} sa_grad;

/* ------------------------------------------------------------------ threads */
typedef void (*block_fn)(void *arg, int64_t blk);
typedef struct {
    block_fn fn;
    void *arg;
    int64_t nblk, stride, first;
} Worker;

static void *worker_main(void *p) {
    Worker *w = (Worker *)p;
    for (int64_t k = w->first; k < w->nblk; k += w->stride) w->fn(w->arg, k);
    return NULL;
}

/* The process's OpenMP runtime (libgomp, the one torch runs its own operations on), when the
 * caller hands it over (sa_use_openmp): the kernel's blocks then run on torch's threads, which
 * would otherwise spin beside POSIX threads of the kernel's own. No link-time dependency. */
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
typedef int (*omp_int_fn)(void);
static gomp_parallel_fn gomp_parallel = NULL;
static omp_int_fn omp_thread_num = NULL, omp_num_threads = NULL;

void sa_use_openmp(void *parallel_fn, void *thread_num_fn, void *num_threads_fn) {
    gomp_parallel = (gomp_parallel_fn)parallel_fn;
    omp_thread_num = (omp_int_fn)thread_num_fn;
    omp_num_threads = (omp_int_fn)num_threads_fn;
}

typedef struct {
    block_fn fn;
    void *arg;
    int64_t nblk;
} OmpJob;

static void omp_body(void *p) {
    OmpJob *j = (OmpJob *)p;
    int64_t t = omp_thread_num(), n = omp_num_threads();
    for (int64_t k = t; k < j->nblk; k += n) j->fn(j->arg, k);
}

/* Run fn(arg, blk) for blk = 0..nblk-1 on up to `threads` threads (the caller is one of them):
 * on the OpenMP runtime when it was handed over, else on POSIX threads; thread t runs blocks
 * t, t + threads, ...; the caller runs the share of any thread that could not be started. */
static void parallel(int64_t threads, int64_t nblk, block_fn fn, void *arg) {
    if (threads > nblk) threads = nblk;
    if (threads > 64) threads = 64;
    if (threads <= 1) {
        for (int64_t k = 0; k < nblk; k++) fn(arg, k);
        return;
    }
    if (gomp_parallel) {
        OmpJob job = {fn, arg, nblk};
        gomp_parallel(omp_body, &job, (unsigned)threads, 0);
        return;
    }
    pthread_t tid[64];
    Worker ws[64];
    uint8_t started[64] = {0};
    for (int64_t t = 0; t < threads; t++) ws[t] = (Worker){fn, arg, nblk, threads, t};
    for (int64_t t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, worker_main, &ws[t]) == 0;
    worker_main(&ws[0]);
    for (int64_t t = 1; t < threads; t++) if (!started[t]) worker_main(&ws[t]);
    for (int64_t t = 1; t < threads; t++) if (started[t]) pthread_join(tid[t], NULL);
}

/* ------------------------------------------------------------------ the tape */
/* REC_LFILL: LayerCarriers' zero of source k rides into layer t (with its layer's delivery or
 * a settle step); REC_TAKE(_Q): source k leaves the pending set (with its neuron's queued zeros), at the
 * selection; REC_DELIV: its value (bits in x) reaches layer t, later in the same forward step
 * (a neuron that fires in between adds to the emptied slot); REC_FILL: queued zeros of source k
 * fill a free slot into layer t; REC_EVALS: one forward step's evaluations of layer t: n_t
 * values U - thr from x index `x` on (NAN: not evaluated; > 0: fired; else silent). */
enum { REC_FRAME = 1, REC_TAKE, REC_TAKE_Q, REC_DELIV, REC_FILL, REC_LFILL, REC_BIAS, REC_EVALS };

typedef struct {
    int32_t type, t, k, x; /* record type, layer, neuron (k) or source (j), x index / value bits */
} Rec;

typedef struct {
    Rec *rec;
    int64_t nrec, cap;
    float **x, **sg;       /* [L] U - thr of each layer's recorded evaluations, and sigma'(U - thr) */
    int64_t *nx, *capx;    /* [L] */
    int failed;
} Chunk;

/* A tape: one chunk per block of samples (SA_GRAD_BLOCKS, fixed); reused from step to step
 * (sa_tape_record resets it and keeps its buffers). */
typedef struct {
    int64_t B, L, nblk;
    Chunk *chunk;          /* [nblk] */
    int64_t *rec_begin;    /* [B] the sample's records in its block's chunk */
    int64_t *rec_end;      /* [B] */
} sa_tape;

static int push_rec(Chunk *c, int32_t type, int32_t t, int32_t k, int32_t x) {
    if (c->failed) return -1;
    if (c->nrec == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 4096;
        Rec *r = (Rec *)realloc(c->rec, sizeof(Rec) * (size_t)cap);
        if (!r) { c->failed = 1; return -1; }
        c->rec = r; c->cap = cap;
    }
    c->rec[c->nrec++] = (Rec){type, t, k, x};
    return 0;
}

/* Room for n values of layer l's x buffer: their index (-1: out of memory). */
static int64_t push_block(Chunk *c, int64_t l, int64_t n) {
    if (c->failed) return -1;
    if (c->nx[l] + n > c->capx[l]) {
        int64_t cap = c->capx[l] ? 2 * c->capx[l] : 4096;
        while (cap < c->nx[l] + n) cap *= 2;
        float *r = (float *)realloc(c->x[l], sizeof(float) * (size_t)cap);
        if (r) c->x[l] = r;
        float *g = r ? (float *)realloc(c->sg[l], sizeof(float) * (size_t)cap) : NULL;
        if (g) c->sg[l] = g;
        if (!r || !g) { c->failed = 1; return -1; }
        c->capx[l] = cap;
    }
    int64_t at = c->nx[l];
    c->nx[l] += n;
    return at;
}

static int32_t float_bits(float v) { int32_t i; memcpy(&i, &v, sizeof i); return i; }
static float bits_float(int32_t i) { float v; memcpy(&v, &i, sizeof v); return v; }

/* ------------------------------------------------------------------ the forward pass */
typedef struct {
    int32_t *plist, *ppos, *sel;
    float *val;
    uint8_t *took;
    Item *items;
    float *cur;
    float *cnt;
    uint8_t *cany;
    uint8_t *lc;              /* [S] LayerCarriers: the source's neuron has a zero riding */
    int64_t *grp_tgt;
} Work;

static void work_free(Work *w) {
    free(w->plist); free(w->ppos); free(w->sel); free(w->val); free(w->took); free(w->items);
    free(w->cur); free(w->cnt); free(w->cany); free(w->grp_tgt); free(w->lc);
    memset(w, 0, sizeof *w);
}

static int work_alloc(Work *w, const sa_plan *P) {
    size_t S = (size_t)(P->S > 0 ? P->S : 1), L = (size_t)P->L;
    int64_t max_n = 1;
    for (int64_t l = 0; l < P->L; l++) {
        int64_t n = P->lay_off[l + 1] - P->lay_off[l];
        if (n > max_n) max_n = n;
    }
    memset(w, 0, sizeof *w);
    w->plist = (int32_t *)malloc(sizeof(int32_t) * S);
    w->ppos = (int32_t *)malloc(sizeof(int32_t) * S);
    w->sel = (int32_t *)malloc(sizeof(int32_t) * S);
    w->val = (float *)malloc(sizeof(float) * S);
    w->took = (uint8_t *)malloc(S);
    w->items = (Item *)malloc(sizeof(Item) * S);
    w->cur = (float *)malloc(sizeof(float) * (size_t)max_n);
    w->cnt = (float *)malloc(sizeof(float) * (size_t)(P->N > 0 ? P->N : 1));
    w->lc = (uint8_t *)malloc(S);
    w->cany = (uint8_t *)malloc(L + 1);
    w->grp_tgt = (int64_t *)malloc(sizeof(int64_t) * (L + 2));
    if (!w->plist || !w->ppos || !w->sel || !w->val || !w->took || !w->items || !w->cur ||
        !w->cnt || !w->cany || !w->grp_tgt || !w->lc) {
        work_free(w);
        return -1;
    }
    for (int64_t g = 0; g < P->L + 2; g++) w->grp_tgt[g] = -1;
    for (int64_t t = 0; t < P->L; t++) if (P->tgt_grp[t] >= 0) w->grp_tgt[P->tgt_grp[t]] = t;
    return 0;
}

static void remove_pending(Work *w, int64_t *np, int32_t j) {
    int32_t p = w->ppos[j], last = w->plist[*np - 1];
    w->plist[p] = last; w->ppos[last] = p; w->ppos[j] = -1; (*np)--;
}

/* One sample's forward steps of one time step; records onto `tp` when it is not NULL. */
static void run_sample(const sa_plan *P, const sa_step *st, int64_t b, Work *w, Chunk *tp) {
    const int64_t L = P->L, N = P->N, S = P->S;
    const int64_t *lay_off = P->lay_off, *grp_off = P->grp_off;
    const int64_t *tgt_grp = P->tgt_grp, *lay_grp = P->lay_grp;
    const float *const *wt = P->wt, *const *bias = P->bias;
    const uint8_t *lay_sub = P->lay_sub, *lay_zero = P->lay_zero, *lay_syn = P->lay_syn;
    const uint8_t *lay_rec = P->lay_rec, *lay_zmul = P->lay_zmul;
    const float *fan = P->fan, *thr = P->thr;
    const int64_t mode = P->mode, F = P->F, max_fs = P->max_fs, stop_k = P->stop_k;
    const int64_t full_eval = P->full_eval;
    int32_t *plist = w->plist, *ppos = w->ppos, *sel = w->sel;
    float *val = w->val, *cur = w->cur, *cnt = w->cnt;
    const float *sync_thr = P->sync_thr;
    uint8_t *took = w->took, *cany = w->cany;
    Item *items = w->items;

    float *pd = st->pend + b * S, *ky = st->key + b * S, *pr = st->prio ? st->prio + b * S : NULL;
    const float *nz = st->noise + b * S;
    float *ac = st->acc + b * N, *sp = st->spikes + b * N;
    uint8_t *fi = st->fired + b * N, *ev = st->evald + b * N, *re = st->reached + b * L;
    uint8_t *cq = st->queued ? st->queued + b * S : NULL;
    const float *dc = st->decayed + b * N;
    const float *ds = st->syn_decayed ? st->syn_decayed + b * N : NULL;
    const float *sb = st->sub ? st->sub + b * N : NULL;
    const float *rz = st->zero_reset ? st->zero_reset + b * N : NULL;
    const float *rcur = st->recurrent ? st->recurrent + b * N : NULL;
    const uint8_t *cd = st->cand ? st->cand + b * N : NULL;
    float *so = st->synops + b * L;
    int64_t fs = st->fsteps[b], oa = st->out_at[b];
    float clk = st->clock ? st->clock[b] : 0.0f;

    uint8_t *lc = P->layer_carriers ? w->lc : NULL;
    if (lc) memset(lc, 0, (size_t)(S > 0 ? S : 1));  /* (fresh every time step) */
    if (sync_thr) {  /* events received so far (torch: SyncThreshold.counts) */
        if (st->sync_counts) memcpy(cnt, st->sync_counts + b * N, sizeof(float) * (size_t)N);
        else memset(cnt, 0, sizeof(float) * (size_t)N);
    }

    /* the pending set as a list (order irrelevant) with each source's position in it */
    int64_t np = 0;
    for (int64_t j = 0; j < S; j++) {
        ppos[j] = -1;
        if (pd[j] != 0.0f) { ppos[j] = (int32_t)np; plist[np++] = (int32_t)j; }
    }

    for (int64_t l = 0; l < L; l++) {
        cany[l] = 0;
        if (cd) for (int64_t k = lay_off[l]; k < lay_off[l + 1]; k++) if (cd[k]) { cany[l] = 1; break; }
    }

    int frame = st->frame_cur != NULL;
    for (;;) {
        int64_t settle = -1, ns = 0;
        if (frame) {  /* the prioritised input frame: always one forward step */
            fs += 1;
            goto deliver;
        }
        if (np == 0) {  /* nothing pending: reach the lowest unreached candidate layer */
            for (int64_t l = 0; l < L; l++) if (cany[l] && !re[l]) { settle = l; break; }
            if (settle < 0) break;
        }
        if (max_fs >= 0 && fs >= max_fs) break;
        if (stop_k >= 0 && oa >= 0 && fs >= oa + stop_k) break;
        fs += 1;

        if (settle < 0) {
            /* select */
            if (F >= np) {
                ns = np;
                memcpy(sel, plist, sizeof(int32_t) * (size_t)np);
            } else if (F == 1) {
                int32_t best = plist[0];
                for (int64_t i = 1; i < np; i++) {
                    int32_t j = plist[i];
                    if (ky[j] > ky[best] || (ky[j] == ky[best] && j < best)) best = j;
                }
                ns = 1;
                sel[0] = best;
            } else {
                for (int64_t i = 0; i < np; i++) { items[i].key = ky[plist[i]]; items[i].idx = plist[i]; }
                select_top(items, np, F);
                ns = F;
                for (int64_t i = 0; i < ns; i++) sel[i] = items[i].idx;
            }
            if (ns > 1) qsort(sel, (size_t)ns, sizeof(int32_t), by_int_asc);
            if (mode == MODE_RANDOM) {
                float kmin = ky[sel[0]];
                for (int64_t i = 1; i < ns; i++) if (ky[sel[i]] < kmin) kmin = ky[sel[i]];
                clk = -kmin;
            }
            /* take the selected spikes out of the pending set (with their neurons' queued zeros) */
            for (int64_t i = 0; i < ns; i++) {
                int32_t j = sel[i];
                val[i] = pd[j];
                pd[j] = 0.0f;
                remove_pending(w, &np, j);
                took[i] = 0;
                if (cq && cq[j]) { cq[j] = 0; took[i] = 1; }
                if (tp) push_rec(tp, took[i] ? REC_TAKE_Q : REC_TAKE, 0, j, 0);
            }
        }
        /* LayerCarriers: a delivery from a hidden layer (or a settle step reaching the layer
         * above it) takes the layer's riding zeros along (torch: SilentCarriers) */
        if (lc) {
            for (int64_t t = 0; t < L; t++) {
                int64_t g = lay_grp[t];
                if (g < 0) continue;
                int64_t g0 = grp_off[g], g1 = grp_off[g + 1], hit = settle >= 0 && w->grp_tgt[g] == settle;
                for (int64_t i = 0; i < ns && !hit; i++) hit = sel[i] >= g0 && sel[i] < g1;
                if (!hit) continue;
                for (int64_t j = g0; j < g1; j++) {
                    if (!lc[j]) continue;
                    lc[j] = 0;
                    if (tp) push_rec(tp, REC_LFILL, (int32_t)w->grp_tgt[g], (int32_t)j, 0);
                }
            }
        }
        /* queued zeros fill the free slots (torch: CarrierQueue.fillers) */
        if (cq && F - ns > 0) {
            int64_t free_slots = F - ns, nq = 0;
            for (int64_t t = 0; t < L; t++) {
                int64_t g = lay_grp[t];
                if (g < 0) continue;
                for (int64_t j = grp_off[g]; j < grp_off[g + 1]; j++)
                    if (cq[j]) { items[nq].key = ky[j]; items[nq].idx = (int32_t)j; nq++; }
            }
            if (nq > free_slots) {
                select_top(items, nq, free_slots);
                nq = free_slots;
            }
            for (int64_t q = 0; q < nq; q++) {
                int32_t j = items[q].idx;
                cq[j] = 0;
                if (tp) {
                    int64_t g = 0;
                    while (grp_off[g + 1] <= j) g++;
                    push_rec(tp, REC_FILL, (int32_t)w->grp_tgt[g], j, 0);
                }
            }
        }

    deliver:;
        /* deliver, layer by layer (groups are in layer order, sel is ascending) */
        int64_t i = 0;
        for (int64_t t = 0; t < L; t++) {
            int64_t g = tgt_grp[t];
            int64_t n0 = lay_off[t], nt = lay_off[t + 1] - n0;
            int touched = 0, with_bias = 1;
            if (frame) {
                if (t != 0) continue;
                const float *fc = st->frame_cur + b * nt;
                touched = 1;
                with_bias = 0;
                for (int64_t n = 0; n < nt; n++) cur[n] = fc[n];
                if (tp) push_rec(tp, REC_FRAME, 0, 0, 0);
            } else if (t == settle) {
                touched = 1;
                for (int64_t n = 0; n < nt; n++) cur[n] = 0.0f;
            } else if (g >= 0 && i < ns && sel[i] < grp_off[g + 1]) {
                int64_t g0 = grp_off[g], g1 = grp_off[g + 1];
                const float *wl = wt[t];
                touched = 1;
                for (int64_t n = 0; n < nt; n++) cur[n] = 0.0f;
                for (; i < ns && sel[i] < g1; i++) {
                    const float *row = wl + (sel[i] - g0) * nt;
                    float v = val[i];
                    for (int64_t n = 0; n < nt; n++) cur[n] += row[n] * v;
                    if (sync_thr) {  /* one event per synapse with a non-zero weight */
                        float *cn = cnt + n0;
                        for (int64_t n = 0; n < nt; n++) cn[n] += row[n] != 0.0f ? 1.0f : 0.0f;
                    }
                    so[t] += fan[sel[i]];
                    if (tp) push_rec(tp, REC_DELIV, (int32_t)t, sel[i], float_bits(v));
                }
            }
            if (!touched) continue;
            int first = !re[t];
            re[t] = 1;
            if (first && with_bias && bias[t]) {
                const float *bt = bias[t];
                for (int64_t n = 0; n < nt; n++) cur[n] = cur[n] + bt[n];
                if (tp) push_rec(tp, REC_BIAS, (int32_t)t, 0, 0);
            }
            int64_t gout = lay_grp[t];
            int64_t s0 = gout >= 0 ? grp_off[gout] : 0;
            int syn = lay_syn[t], rec = lay_rec[t], sub = lay_sub[t], zmul = lay_zmul[t];
            float *xb = NULL;
            if (tp) {
                int64_t at = push_block(tp, t, nt);
                if (at >= 0) {
                    push_rec(tp, REC_EVALS, (int32_t)t, 0, (int32_t)at);
                    xb = tp->x[t] + at;
                    for (int64_t n = 0; n < nt; n++) xb[n] = NAN;
                }
            }
            for (int64_t n = 0; n < nt; n++) {
                int64_t k = n0 + n;
                float c = cur[n];
                int e = (c != 0.0f) || (first && (full_eval || (cd && cd[k])));
                if (lay_zero[t] && fi[k]) c = 0.0f;
                ac[k] = ac[k] + c;
                if (!e || fi[k]) continue;
                if (sync_thr && !(cnt[k] > sync_thr[k])) continue;  /* too few events yet */
                ev[k] = 1;
                /* the torch code's order of operations (neurons.py, recurrent.py) */
                float m;
                if (syn) {
                    float sy = ds[k] + ac[k];
                    if (rec) sy = sy + rcur[k];
                    m = dc[k] + sy;
                } else {
                    m = dc[k] + ac[k];
                    if (rec) m = m + rcur[k];
                }
                if (sub) m = m - sb[k];
                else if (zmul) m = m - m * rz[k];
                float x = m - thr[k];
                if (xb) xb[n] = x;
                if (!(x > 0.0f)) {  /* silent: its zero output queues (hidden) */
                    if (gout >= 0 && cq) cq[s0 + n] = 1;
                    if (gout >= 0 && lc) lc[s0 + n] = 1;
                    continue;
                }
                fi[k] = 1;
                sp[k] = sp[k] + 1.0f;
                if (gout < 0) {
                    if (stop_k >= 0 && oa < 0) oa = fs;
                    continue;
                }
                int64_t j = s0 + n;
                int was = pd[j] != 0.0f;
                pd[j] = pd[j] + 1.0f;
                if (mode == MODE_RANDOM) {
                    if (!was) ky[j] = -(clk + nz[j]);
                } else if (mode == MODE_MEMBRANE) {
                    pr[j] = m;
                    ky[j] = m + nz[j];
                }
                int now = pd[j] != 0.0f;
                if (now && ppos[j] < 0) { ppos[j] = (int32_t)np; plist[np++] = (int32_t)j; }
                else if (!now && ppos[j] >= 0) remove_pending(w, &np, (int32_t)j);
            }
        }
        frame = 0;
    }
    st->fsteps[b] = fs;
    st->out_at[b] = oa;
    if (st->clock) st->clock[b] = clk;
}

/* sg[i] = the derivative of snnTorch's surrogate at x[i] (kind 0: left to the caller); the
 * formulas of snntorch.surrogate's backward passes. */
static void surrogate_slopes(int64_t kind, double p, const float *x, float *sg, int64_t n) {
    if (kind == 1) {  /* atan(alpha): alpha / 2 / (1 + (pi / 2 * alpha * x)^2) */
        const float a = (float)(3.14159265358979323846 / 2 * p), h = (float)(p / 2);
        for (int64_t i = 0; i < n; i++) { float u = a * x[i]; sg[i] = (1.0f / (1.0f + u * u)) * h; }
    } else if (kind == 2) {  /* fast_sigmoid(slope): 1 / (slope * |x| + 1)^2 */
        const float s = (float)p;
        for (int64_t i = 0; i < n; i++) { float d = s * fabsf(x[i]) + 1.0f; sg[i] = 1.0f / (d * d); }
    } else if (kind == 3) {  /* sigmoid(slope): slope * e / (e + 1)^2, e = exp(-slope * x) */
        const float s = (float)p;
        for (int64_t i = 0; i < n; i++) {
            float e = expf(-s * x[i]), d = e + 1.0f;
            sg[i] = (s * e) / (d * d);
        }
    } else if (kind == 4) {  /* straight_through_estimator: 1 */
        for (int64_t i = 0; i < n; i++) sg[i] = 1.0f;
    }
}

typedef struct {
    const sa_plan *P;
    const sa_step *st;
    int64_t nblk;
    sa_tape *tape;   /* NULL: no recording */
    int failed;
} FwdJob;

static void fwd_block(void *arg, int64_t blk) {
    FwdJob *j = (FwdJob *)arg;
    const int64_t B = j->P->B;
    int64_t b0 = B * blk / j->nblk, b1 = B * (blk + 1) / j->nblk;
    Work w;
    if (work_alloc(&w, j->P) != 0) { j->failed = 1; return; }
    Chunk *c = j->tape ? &j->tape->chunk[blk] : NULL;
    for (int64_t b = b0; b < b1; b++) {
        if (c) j->tape->rec_begin[b] = c->nrec;
        run_sample(j->P, j->st, b, &w, c);
        if (c) j->tape->rec_end[b] = c->nrec;
    }
    if (c && c->failed) j->failed = 1;
    if (c && !c->failed)
        for (int64_t l = 0; l < j->P->L; l++)
            surrogate_slopes(j->P->sg_kind[l], j->P->sg_param[l], c->x[l], c->sg[l], c->nx[l]);
    work_free(&w);
}

/* Returns 0 on success, -1 when memory could not be allocated. */
int sa_async_steps(const sa_plan *plan, const sa_step *step)
{
    int64_t nblk = plan->threads > 1 ? plan->threads : 1;
    if (nblk > plan->B) nblk = plan->B > 0 ? plan->B : 1;
    FwdJob job = {plan, step, nblk, NULL, 0};
    parallel(plan->threads, nblk, fwd_block, &job);
    return job.failed ? -1 : 0;
}

static int64_t grad_blocks(int64_t B) { return B < SA_GRAD_BLOCKS ? (B > 0 ? B : 1) : SA_GRAD_BLOCKS; }

int64_t sa_grad_blocks(int64_t B) { return grad_blocks(B); }

void sa_tape_free(sa_tape *tp) {
    if (!tp) return;
    if (tp->chunk) {
        for (int64_t c = 0; c < tp->nblk; c++) {
            Chunk *ch = &tp->chunk[c];
            free(ch->rec);
            for (int64_t l = 0; l < tp->L; l++) {
                if (ch->x) free(ch->x[l]);
                if (ch->sg) free(ch->sg[l]);
            }
            free(ch->x); free(ch->sg); free(ch->nx); free(ch->capx);
        }
    }
    free(tp->chunk); free(tp->rec_begin); free(tp->rec_end);
    free(tp);
}

/* An empty tape for plan's shapes (NULL: out of memory). */
sa_tape *sa_tape_new(const sa_plan *plan)
{
    const int64_t L = plan->L, B = plan->B, nblk = grad_blocks(B);
    sa_tape *tp = (sa_tape *)calloc(1, sizeof(sa_tape));
    if (!tp) return NULL;
    tp->B = B; tp->L = L; tp->nblk = nblk;
    tp->chunk = (Chunk *)calloc((size_t)nblk, sizeof(Chunk));
    tp->rec_begin = (int64_t *)calloc((size_t)(B > 0 ? B : 1), sizeof(int64_t));
    tp->rec_end = (int64_t *)calloc((size_t)(B > 0 ? B : 1), sizeof(int64_t));
    if (!tp->chunk || !tp->rec_begin || !tp->rec_end) { sa_tape_free(tp); return NULL; }
    for (int64_t c = 0; c < nblk; c++) {
        Chunk *ch = &tp->chunk[c];
        ch->x = (float **)calloc((size_t)L, sizeof(float *));
        ch->sg = (float **)calloc((size_t)L, sizeof(float *));
        ch->nx = (int64_t *)calloc((size_t)L, sizeof(int64_t));
        ch->capx = (int64_t *)calloc((size_t)L, sizeof(int64_t));
        if (!ch->x || !ch->sg || !ch->nx || !ch->capx) { sa_tape_free(tp); return NULL; }
    }
    return tp;
}

/* Run the step's forward pass again onto the tape (emptied first; the step's arrays are updated
 * as by sa_async_steps: pass copies). Returns 0, or -1 when memory ran out. */
int sa_tape_record(const sa_plan *plan, const sa_step *step, sa_tape *tp)
{
    for (int64_t c = 0; c < tp->nblk; c++) {
        Chunk *ch = &tp->chunk[c];
        ch->nrec = 0;
        ch->failed = 0;
        for (int64_t l = 0; l < tp->L; l++) ch->nx[l] = 0;
    }
    FwdJob job = {plan, step, tp->nblk, tp, 0};
    parallel(plan->threads, tp->nblk, fwd_block, &job);
    return job.failed ? -1 : 0;
}

int64_t sa_tape_chunks(const sa_tape *tp) { return tp->nblk; }

/* The bytes the tape holds (its buffers' capacity: the largest time step recorded so far). */
int64_t sa_tape_bytes(const sa_tape *tp) {
    int64_t n = 0;
    for (int64_t c = 0; c < tp->nblk; c++) {
        n += tp->chunk[c].cap * (int64_t)sizeof(Rec);
        for (int64_t l = 0; l < tp->L; l++) n += 2 * tp->chunk[c].capx[l] * (int64_t)sizeof(float);
    }
    return n;
}
int64_t sa_tape_count(const sa_tape *tp, int64_t c, int64_t l) { return tp->chunk[c].nx[l]; }
float *sa_tape_x(const sa_tape *tp, int64_t c, int64_t l) { return tp->chunk[c].x[l]; }
float *sa_tape_sg(const sa_tape *tp, int64_t c, int64_t l) { return tp->chunk[c].sg[l]; }

/* ------------------------------------------------------------------ the backward pass */
/* sum_n a[n] * b[n] in eight interleaved partial sums (vectorisable; the gradient's rounding
 * differs from a sequential sum in the last bits only) */
static float dot(const float *a, const float *b, int64_t n) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int q = 0; q < 8; q++) s[q] += a[i + q] * b[i + q];
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

typedef struct {
    const sa_plan *P;
    const sa_step *st;
    const sa_tape *tp;
    const sa_grad *gr;
    int failed;
} BackJob;

static void back_block(void *arg, int64_t blk) {
    BackJob *J = (BackJob *)arg;
    const sa_plan *P = J->P;
    const sa_step *st = J->st;
    const sa_tape *tp = J->tp;
    const sa_grad *gr = J->gr;
    const int64_t B = P->B, L = P->L, N = P->N, S = P->S, nblk = tp->nblk;
    const int64_t *lay_off = P->lay_off, *grp_off = P->grp_off, *tgt_grp = P->tgt_grp;
    const int64_t *lay_grp = P->lay_grp;
    int64_t b0 = B * blk / nblk, b1 = B * (blk + 1) / nblk;
    float *G = (float *)malloc(sizeof(float) * (size_t)(N > 0 ? N : 1));
    float *gP = (float *)malloc(sizeof(float) * (size_t)(S > 0 ? S : 1));
    float *gC = (float *)malloc(sizeof(float) * (size_t)(S > 0 ? S : 1));
    float *Gz = (float *)malloc(sizeof(float) * (size_t)(N > 0 ? N : 1));
    float *gS = (float *)malloc(sizeof(float) * (size_t)(S > 0 ? S : 1));
    float *gL = (float *)malloc(sizeof(float) * (size_t)(S > 0 ? S : 1));
    uint8_t *fi = (uint8_t *)malloc((size_t)(N > 0 ? N : 1));
    uint8_t *zk = (uint8_t *)malloc((size_t)(N > 0 ? N : 1));
    if (!G || !gP || !gC || !fi || !Gz || !zk || !gS || !gL) {
        free(G); free(gP); free(gC); free(fi); free(Gz); free(zk); free(gS); free(gL);
        J->failed = 1;
        return;
    }
    for (int64_t t = 0; t < L; t++)
        for (int64_t k = lay_off[t]; k < lay_off[t + 1]; k++) zk[k] = P->lay_zero[t];
    float *const *gwt = gr->g_wt + blk * L;
    float *const *gb = gr->g_bias + blk * L;
    const Chunk *ch = &tp->chunk[blk];

    for (int64_t b = b0; b < b1; b++) {
        memcpy(G, gr->g_acc + b * N, sizeof(float) * (size_t)N);
        memcpy(gP, gr->g_pend + b * S, sizeof(float) * (size_t)S);
        if (gr->g_queued) memcpy(gC, gr->g_queued + b * S, sizeof(float) * (size_t)S);
        else memset(gC, 0, sizeof(float) * (size_t)S);
        memcpy(fi, st->fired + b * N, (size_t)N);
        /* Gz: the adjoint of a current arriving now (0 where a zero-reset neuron has fired) */
        for (int64_t k = 0; k < N; k++) Gz[k] = zk[k] && fi[k] ? 0.0f : G[k];
        const float *gs_out = gr->g_spikes + b * N;
        const float *rz = st->zero_reset ? st->zero_reset + b * N : NULL;
        const int queued = st->queued != NULL || P->layer_carriers;
        float *gQ = P->layer_carriers ? gL : gC;  /* where a silent hidden zero went */
        if (P->layer_carriers) {
            if (gr->g_carried) memcpy(gL, gr->g_carried + b * S, sizeof(float) * (size_t)S);
            else memset(gL, 0, sizeof(float) * (size_t)S);
        }
        float *gx = gr->g_x + b * N;
        for (int64_t r = tp->rec_end[b] - 1; r >= tp->rec_begin[b]; r--) {
            const Rec rc = ch->rec[r];
            const int64_t t = rc.t, n0 = lay_off[t], nt = lay_off[t + 1] - n0;
            switch (rc.type) {
            case REC_EVALS: {
                const int64_t g = lay_grp[t], s0 = g >= 0 ? grp_off[g] : 0;
                const float *xs = ch->x[t] + rc.x, *sgs = ch->sg[t] + rc.x;
                const int zmul = P->lay_zmul[t], hidden = g >= 0;
                const int silent_grad = hidden ? queued : (int)P->per_eval;
                for (int64_t n = 0; n < nt; n++) {
                    const float xv = xs[n];
                    if (xv != xv) continue;  /* not evaluated */
                    const int64_t k = n0 + n;
                    float gs;
                    if (xv > 0.0f) {  /* fired: the spike record and its pending slot */
                        gs = gs_out[k];
                        if (hidden) gs = gs + gP[s0 + n];
                        fi[k] = 0;
                    } else if (silent_grad) {  /* silent: its queue entry, or the record */
                        gs = hidden ? gQ[s0 + n] : gs_out[k];
                    } else {
                        continue;
                    }
                    float gm = gs * sgs[n];
                    gx[k] += gm;
                    if (zmul) gm = gm - gm * rz[k];
                    G[k] += gm;
                    Gz[k] = zk[k] && fi[k] ? 0.0f : G[k];
                }
                break;
            }
            case REC_BIAS: {
                float *gbt = gb[t];
                if (!gbt) break;
                for (int64_t n = 0; n < nt; n++) gbt[n] += Gz[n0 + n];
                break;
            }
            case REC_TAKE:
            case REC_TAKE_Q:  /* the slot's content before the take: the delivered value */
                gP[rc.k] = gS[rc.k];
                if (rc.type == REC_TAKE_Q) gC[rc.k] = gS[rc.k];
                break;
            case REC_DELIV:
            case REC_LFILL:
            case REC_FILL: {
                int64_t j = rc.k, g0 = grp_off[tgt_grp[t]];
                const float *row = P->wt[t] + (j - g0) * nt;
                const float *Gt = Gz + n0;
                float gv = dot(row, Gt, nt);
                if (rc.type == REC_FILL || rc.type == REC_LFILL) {  /* value 0: no weight gradient */
                    (rc.type == REC_FILL ? gC : gL)[j] = gv;
                    break;
                }
                float v = bits_float(rc.x);
                float *grow = gwt[t] + (j - g0) * nt;
                for (int64_t n = 0; n < nt; n++) grow[n] += v * Gt[n];
                gS[j] = gv;  /* (the take, earlier on the tape, hands it to the slot) */
                break;
            }
            case REC_FRAME: {
                if (!gr->g_frame) break;
                float *gf = gr->g_frame + b * nt;
                for (int64_t n = 0; n < nt; n++) gf[n] = Gz[n0 + n];
                break;
            }
            }
        }
        memcpy(gr->g_pend_in + b * S, gP, sizeof(float) * (size_t)S);
        if (gr->g_queued_in) memcpy(gr->g_queued_in + b * S, gC, sizeof(float) * (size_t)S);
    }
    free(G); free(gP); free(gC); free(fi); free(Gz); free(zk); free(gS); free(gL);
}

/* The backward pass of one time step over a recorded tape. Weight and bias gradients are
 * accumulated into the caller's per-block buffers (g_wt, g_bias: sa_grad_blocks(B) * L
 * pointers, block-major): the caller sums the blocks, in block order, when it needs the total.
 * Returns 0 on success, -1 when memory ran out. */
int sa_tape_backward(const sa_plan *plan, const sa_step *step, const sa_tape *tape, const sa_grad *grad)
{
    BackJob J = {plan, step, tape, grad, 0};
    parallel(plan->threads, tape->nblk, back_block, &J);
    return J.failed ? -1 : 0;
}

/* The digest of this file's text (kernel_build.source_digest), defined by both builds (setup.py,
 * native.py): the loader runs a prebuilt library only if it was built from the source beside it. */
#ifndef SA_SOURCE_DIGEST
#define SA_SOURCE_DIGEST "unknown"
#endif
const char *sa_source_digest(void) { return SA_SOURCE_DIGEST; }
