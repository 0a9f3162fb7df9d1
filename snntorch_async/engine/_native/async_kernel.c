/* Native forward-step loop of the asynchronous engine (CPU, float32, inference).
 *
 * Runs, for every sample of the batch, the forward steps of one time step that follow the input
 * frame, for networks whose spiking layers are each one nn.Linear feeding snn.Leaky neurons.
 * The semantics and the floating-point arithmetic are exactly those of the torch code in
 * engine/torch_backend.py (its inference path with sparse deliveries); tests compare the two bit for bit.
 *
 * Per sample and forward step:
 *   select   the pending sources with the F highest keys (ties: lower source index first), or
 *            all of them when at most F are pending;
 *   deliver  for each receiving layer, in layer order: cur[n] = sum over the selected sources j of
 *            that layer, in ascending j, of (wt[j][n] * value_j), starting from 0; plus the bias
 *            at the first delivery into the layer in this time step;
 *   settle   a sample with nothing pending whose unreached layers hold candidates (neurons that
 *            fire on the bias alone) reaches the lowest such layer with its bias only;
 *   integrate  evaluated = (cur != 0) or (first delivery and (full layer evaluation or
 *            candidate)); zero-reset
 *            neurons that already fired discard the current; acc += cur;
 *   fire     an evaluated neuron that has not fired yet fires if (decayed + acc [- sub]) - thr > 0;
 *            its spike joins the pending set (hidden layers) with a key given by the strategy.
 *
 * Compile with -ffp-contract=off (no fused multiply-add) so products and sums round as torch's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float key;
    int32_t idx;
} Item;

/* Higher key first; equal keys: lower index first (torch.sort(descending, stable=True)). */
static int by_key_desc(const void *a, const void *b) {
    const Item *x = (const Item *)a, *y = (const Item *)b;
    if (x->key > y->key) return -1;
    if (x->key < y->key) return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
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
    const uint8_t *lay_sub;   /* [L] subtract reset: membrane = decayed + acc - sub */
    const uint8_t *lay_zero;  /* [L] zero reset: current after firing is discarded */
    const float *fan;         /* [S] non-zero fan-out of each source (synaptic operations) */
    const float *thr;         /* [N] threshold */
    int64_t mode;             /* the ordering: MODE_RANDOM, MODE_MEMBRANE or MODE_INDEX */
    int64_t F;                /* forward group size (>= 1) */
    int64_t max_fs;           /* max forward steps per time step, -1 none */
    int64_t stop_k;           /* stop_on_output, -1 off */
    int64_t full_eval;        /* full layer evaluation */
} sa_plan;

/* One time step's arrays (mirrored by the ctypes Structure KernelStep). */
typedef struct {
    const uint8_t *cand;      /* [B, N] candidates: fire on the bias alone, or NULL (none) */
    const float *frame_cur;   /* [B, n_0] the input frame's current into layer 0 (bias included),
                                 delivered in a first forward step; NULL: no input frame */
    const float *decayed;     /* [B, N] */
    const float *sub;         /* [B, N] reset * threshold (read where lay_sub) */
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
} sa_step;

/* Returns 0 on success, -1 when memory could not be allocated (nothing was changed then). */
int sa_async_steps(const sa_plan *plan, const sa_step *step)
{
    const int64_t B = plan->B, L = plan->L, N = plan->N, S = plan->S;
    const int64_t *lay_off = plan->lay_off, *grp_off = plan->grp_off;
    const int64_t *tgt_grp = plan->tgt_grp, *lay_grp = plan->lay_grp;
    const float *const *wt = plan->wt, *const *bias = plan->bias;
    const uint8_t *lay_sub = plan->lay_sub, *lay_zero = plan->lay_zero;
    const float *fan = plan->fan, *thr = plan->thr;
    const int64_t mode = plan->mode, F = plan->F, max_fs = plan->max_fs, stop_k = plan->stop_k;
    const int64_t full_eval = plan->full_eval;
    const uint8_t *cand = step->cand;
    const float *frame_cur = step->frame_cur, *decayed = step->decayed, *sub = step->sub;
    float *acc = step->acc, *spikes = step->spikes, *pend = step->pend, *key = step->key;
    float *prio = step->prio, *clock = step->clock, *synops = step->synops;
    const float *noise = step->noise;
    uint8_t *fired = step->fired, *evald = step->evald, *reached = step->reached;
    int64_t *fsteps = step->fsteps, *out_at = step->out_at;

    int64_t max_n = 0;
    for (int64_t l = 0; l < L; l++) {
        int64_t n = lay_off[l + 1] - lay_off[l];
        if (n > max_n) max_n = n;
    }
    int32_t *plist = (int32_t *)malloc(sizeof(int32_t) * (size_t)(S > 0 ? S : 1));
    int32_t *ppos = (int32_t *)malloc(sizeof(int32_t) * (size_t)(S > 0 ? S : 1));
    int32_t *sel = (int32_t *)malloc(sizeof(int32_t) * (size_t)(S > 0 ? S : 1));
    float *val = (float *)malloc(sizeof(float) * (size_t)(S > 0 ? S : 1));
    Item *items = (Item *)malloc(sizeof(Item) * (size_t)(S > 0 ? S : 1));
    float *cur = (float *)malloc(sizeof(float) * (size_t)(max_n > 0 ? max_n : 1));
    uint8_t *cany = (uint8_t *)malloc((size_t)L + 1);
    if (!plist || !ppos || !sel || !val || !items || !cur || !cany) {
        free(plist); free(ppos); free(sel); free(val); free(items); free(cur); free(cany);
        return -1;
    }

    for (int64_t b = 0; b < B; b++) {
        float *pd = pend + b * S, *ky = key + b * S, *pr = prio ? prio + b * S : NULL;
        const float *nz = noise + b * S;
        float *ac = acc + b * N, *sp = spikes + b * N;
        uint8_t *fi = fired + b * N, *ev = evald + b * N, *re = reached + b * L;
        const float *dc = decayed + b * N, *sb = sub + b * N;
        const uint8_t *cd = cand ? cand + b * N : NULL;
        float *so = synops + b * L;
        int64_t fs = fsteps[b], oa = out_at[b];
        float clk = clock ? clock[b] : 0.0f;

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

        int frame = frame_cur != NULL;
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
                    qsort(items, (size_t)np, sizeof(Item), by_key_desc);
                    ns = F;
                    for (int64_t i = 0; i < ns; i++) sel[i] = items[i].idx;
                }
                if (ns > 1) qsort(sel, (size_t)ns, sizeof(int32_t), by_int_asc);
                if (mode == MODE_RANDOM) {
                    float kmin = ky[sel[0]];
                    for (int64_t i = 1; i < ns; i++) if (ky[sel[i]] < kmin) kmin = ky[sel[i]];
                    clk = -kmin;
                }
                /* take the selected spikes out of the pending set */
                for (int64_t i = 0; i < ns; i++) {
                    int32_t j = sel[i];
                    val[i] = pd[j];
                    pd[j] = 0.0f;
                    int32_t p = ppos[j], last = plist[np - 1];
                    plist[p] = last; ppos[last] = p; ppos[j] = -1; np--;
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
                    const float *fc = frame_cur + b * nt;
                    touched = 1;
                    with_bias = 0;
                    for (int64_t n = 0; n < nt; n++) cur[n] = fc[n];
                } else if (t == settle) {
                    touched = 1;
                    for (int64_t n = 0; n < nt; n++) cur[n] = 0.0f;
                } else if (g >= 0 && i < ns && sel[i] < grp_off[g + 1]) {
                    int64_t g0 = grp_off[g], g1 = grp_off[g + 1];
                    const float *w = wt[t];
                    touched = 1;
                    for (int64_t n = 0; n < nt; n++) cur[n] = 0.0f;
                    for (; i < ns && sel[i] < g1; i++) {
                        const float *row = w + (sel[i] - g0) * nt;
                        float v = val[i];
                        for (int64_t n = 0; n < nt; n++) cur[n] += row[n] * v;
                        so[t] += fan[sel[i]];
                    }
                }
                if (!touched) continue;
                int first = !re[t];
                re[t] = 1;
                if (first && with_bias && bias[t]) {
                    const float *bt = bias[t];
                    for (int64_t n = 0; n < nt; n++) cur[n] = cur[n] + bt[n];
                }
                int64_t gout = lay_grp[t];
                int64_t s0 = gout >= 0 ? grp_off[gout] : 0;
                for (int64_t n = 0; n < nt; n++) {
                    int64_t k = n0 + n;
                    float c = cur[n];
                    int e = (c != 0.0f) || (first && (full_eval || (cd && cd[k])));
                    if (lay_zero[t] && fi[k]) c = 0.0f;
                    ac[k] = ac[k] + c;
                    if (!e || fi[k]) continue;
                    ev[k] = 1;
                    float m = dc[k] + ac[k];
                    if (lay_sub[t]) m = m - sb[k];
                    if (!((m - thr[k]) > 0.0f)) continue;
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
                    else if (!now && ppos[j] >= 0) {
                        int32_t p = ppos[j], last = plist[np - 1];
                        plist[p] = last; ppos[last] = p; ppos[j] = -1; np--;
                    }
                }
            }
            frame = 0;
        }
        fsteps[b] = fs;
        out_at[b] = oa;
        if (clock) clock[b] = clk;
    }
    free(plist); free(ppos); free(sel); free(val); free(items); free(cur); free(cany);
    return 0;
}

/* The digest of this file's text (kernel_build.source_digest), defined by both builds (setup.py,
 * native.py): the loader runs a prebuilt library only if it was built from the source beside it. */
#ifndef SA_SOURCE_DIGEST
#define SA_SOURCE_DIGEST "unknown"
#endif
const char *sa_source_digest(void) { return SA_SOURCE_DIGEST; }
