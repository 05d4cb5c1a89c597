// Host build of the CUDA ML-KEM-768 decapsulation (mlkem.cuh): the same `__host__ __device__`
// code the GPU kernel runs, compiled by the host C compiler, so that it is checked against the
// reference implementation on a machine without a GPU (kernels/tests/cuda_mlkem_host.rs).
//
// A "group" (a thread block on the GPU) is either this thread alone (`nthreads == 1`: every
// cooperative loop runs all its items, the barrier is a no-op) or `nthreads` POSIX threads with
// a barrier in place of `__syncthreads`, which exercises the stage barriers of the kernel: a
// missing one shows up as a wrong secret.
//
// Build: cc -O2 -pthread mlkem_host.c -o mlkem_host
// Usage: mlkem_host decaps NTHREADS INPUT OUTPUT
//          INPUT = dk (2400 bytes) || n ciphertexts (1088 bytes each); OUTPUT = n x 32 bytes.
//        mlkem_host ntt INPUT OUTPUT
//          INPUT = pairs of polynomials (2 x 256 little-endian u16, coefficients below q);
//          OUTPUT = NTT^-1(NTT(a) o NTT(b)) of each pair (256 little-endian u16).
//        mlkem_host hash INPUT OUTPUT
//          INPUT = m (32) || h (32) || z (32) || c (1088); OUTPUT = G(m || h) (64) ||
//          PRF(m, 0..6) (7 x 128) || J(z || c) (32) || SampleNTT(m || 1 || 2) (256 x u16).
// Exit status: 0 on success, 2 on a usage or input error (with a message on stderr).
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlkem.cuh"

// The barrier of the calling thread's group, or none for a group of one thread.
static _Thread_local pthread_barrier_t *mlkem_barrier = NULL;

static void mlkem_host_sync(void) {
    if (mlkem_barrier != NULL) {
        pthread_barrier_wait(mlkem_barrier);
    }
}

typedef struct {
    const u8 *dk;
    const u32 *cts;
    size_t n;
    u32 *ss;
    mlkem768_key *key;
    mlkem768_ws *ws;
    pthread_barrier_t *barrier;
    unsigned tid;
    unsigned nt;
} group_thread;

// One thread of a group: expands the key cooperatively, computes the rejection secrets (the
// kernel's one-thread-per-ciphertext pass, here shared out among the group), then decapsulates
// every ciphertext in turn, as a thread block of the kernel does over its share of the batch.
static void *group_main(void *arg) {
    group_thread *g = (group_thread *)arg;
    mlkem_barrier = g->barrier;
    mlkem768_expand_key(g->dk, g->key, g->tid, g->nt);
    mlkem_host_sync();
    for (size_t b = g->tid; b < g->n; b += g->nt) {
        mlkem768_reject_secret(g->key, g->cts + b * MLKEM768_CT_WORDS, g->ss + b * MLKEM768_SS_WORDS);
    }
    mlkem_host_sync();
    for (size_t b = 0; b < g->n; b++) {
        mlkem768_decaps_group(g->key, g->cts + b * MLKEM768_CT_WORDS, g->ss + b * MLKEM768_SS_WORDS,
                              g->ws, g->tid, g->nt);
    }
    mlkem_barrier = NULL;
    return NULL;
}

// Decapsulates `n` ciphertexts (`cts`, 4-byte aligned, 1088 bytes each) under the 2400-byte key
// `dk` into `ss` (4-byte aligned, 32 bytes each) with a group of `nthreads` threads. Returns 0,
// or -1 when threads cannot be created. Wipes the expanded key and the workspace.
int mlkem768_decaps_host(const u8 *dk, const u32 *cts, size_t n, u32 *ss, unsigned nthreads) {
    mlkem768_key *key = (mlkem768_key *)calloc(1, sizeof(mlkem768_key));
    mlkem768_ws *ws = (mlkem768_ws *)calloc(1, sizeof(mlkem768_ws));
    group_thread *threads = (group_thread *)calloc(nthreads, sizeof(group_thread));
    pthread_t *ids = (pthread_t *)calloc(nthreads, sizeof(pthread_t));
    int rc = 0;
    if (key == NULL || ws == NULL || threads == NULL || ids == NULL || nthreads == 0) {
        rc = -1;
        goto out;
    }
    pthread_barrier_t barrier;
    if (nthreads > 1 && pthread_barrier_init(&barrier, NULL, nthreads) != 0) {
        rc = -1;
        goto out;
    }
    for (unsigned t = 0; t < nthreads; t++) {
        group_thread g = {dk, cts, n, ss, key, ws, nthreads > 1 ? &barrier : NULL, t, nthreads};
        threads[t] = g;
    }
    if (nthreads == 1) {
        group_main(&threads[0]);
    } else {
        unsigned started = 0;
        for (; started < nthreads; started++) {
            if (pthread_create(&ids[started], NULL, group_main, &threads[started]) != 0) {
                break;
            }
        }
        // A group that could not start in full would wait at its first barrier forever.
        if (started < nthreads) {
            fprintf(stderr, "mlkem_host: could only start %u of %u threads\n", started, nthreads);
            exit(2);
        }
        for (unsigned t = 0; t < nthreads; t++) {
            pthread_join(ids[t], NULL);
        }
        pthread_barrier_destroy(&barrier);
    }
out:
    if (key != NULL) {
        memset(key, 0, sizeof(*key));
    }
    if (ws != NULL) {
        memset(ws, 0, sizeof(*ws));
    }
    free(key);
    free(ws);
    free(threads);
    free(ids);
    return rc;
}

// Reads a whole file into a 4-byte aligned buffer.
static u8 *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    u32 *buf = (u32 *)malloc(((size_t)size + 4) / 4 * 4);
    if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    *len = (size_t)size;
    return (u8 *)buf;
}

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    size_t written = fwrite(data, 1, len, f);
    return fclose(f) == 0 && written == len ? 0 : -1;
}

static int fail(const char *what) {
    fprintf(stderr, "mlkem_host: %s\n", what);
    return 2;
}

static void store_poly(u8 *out, const u16 *f) {
    for (int i = 0; i < MLKEM_N; i++) {
        out[2 * i] = (u8)f[i];
        out[2 * i + 1] = (u8)(f[i] >> 8);
    }
}

static int run_ntt(const u8 *in, size_t len, u8 **out, size_t *out_len) {
    if (len % 1024 != 0) {
        return -1;
    }
    size_t pairs = len / 1024;
    *out = (u8 *)malloc(pairs * 512 + 1);
    *out_len = pairs * 512;
    for (size_t p = 0; p < pairs; p++) {
        u16 a[MLKEM_N], b[MLKEM_N], c[MLKEM_N];
        for (int i = 0; i < MLKEM_N; i++) {
            a[i] = (u16)(in[1024 * p + 2 * i] | (in[1024 * p + 2 * i + 1] << 8));
            b[i] = (u16)(in[1024 * p + 512 + 2 * i] | (in[1024 * p + 512 + 2 * i + 1] << 8));
            if (a[i] >= MLKEM_Q || b[i] >= MLKEM_Q) {
                return -1;
            }
        }
        for (unsigned layer = 0; layer < 7; layer++) {
            for (unsigned k = 0; k < 128; k++) {
                mlkem_ntt_butterfly(a, layer, k);
                mlkem_ntt_butterfly(b, layer, k);
            }
        }
        for (unsigned i = 0; i < 128; i++) {
            u32 c0 = 0, c1 = 0;
            mlkem_basemul_acc(a, b, i, &c0, &c1);
            c[2 * i] = (u16)mlkem_modq(c0);
            c[2 * i + 1] = (u16)mlkem_modq(c1);
        }
        for (unsigned layer = 0; layer < 7; layer++) {
            for (unsigned k = 0; k < 128; k++) {
                mlkem_intt_butterfly(c, layer, k);
            }
        }
        for (int i = 0; i < MLKEM_N; i++) {
            c[i] = (u16)mlkem_mul(c[i], MLKEM_INV128);
        }
        store_poly(*out + 512 * p, c);
    }
    return 0;
}

static int run_hash(const u8 *in, size_t len, u8 **out, size_t *out_len) {
    if (len != 96 + MLKEM768_CT_BYTES) {
        return -1;
    }
    *out_len = 64 + 7 * 128 + 32 + 512;
    *out = (u8 *)malloc(*out_len);
    mlkem_g(in, in + 32, *out);
    for (int n = 0; n < 7; n++) {
        mlkem_prf(in, (u8)n, *out + 64 + 128 * n);
    }
    mlkem_j(in + 64, in + 96, *out + 64 + 7 * 128);
    u16 a[MLKEM_N];
    mlkem_sample_ntt(in, 1, 2, a);
    store_poly(*out + 64 + 7 * 128 + 32, a);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        return fail("usage: mlkem_host decaps NTHREADS INPUT OUTPUT | ntt INPUT OUTPUT | hash "
                    "INPUT OUTPUT");
    }
    const char *mode = argv[1];
    int decaps = strcmp(mode, "decaps") == 0;
    if (decaps && argc != 5) {
        return fail("usage: mlkem_host decaps NTHREADS INPUT OUTPUT");
    }
    const char *input = argv[decaps ? 3 : 2];
    const char *output = argv[decaps ? 4 : 3];
    size_t len = 0;
    u8 *in = read_file(input, &len);
    if (in == NULL) {
        return fail("cannot read the input file");
    }
    u8 *out = NULL;
    size_t out_len = 0;
    if (decaps) {
        char *end = NULL;
        unsigned long nthreads = strtoul(argv[2], &end, 10);
        if (end == argv[2] || *end != '\0' || nthreads == 0 || nthreads > 1024) {
            return fail("NTHREADS must be a number from 1 to 1024");
        }
        if (len < MLKEM768_DK_BYTES || (len - MLKEM768_DK_BYTES) % MLKEM768_CT_BYTES != 0) {
            return fail("the input is not a 2400-byte key followed by 1088-byte ciphertexts");
        }
        size_t n = (len - MLKEM768_DK_BYTES) / MLKEM768_CT_BYTES;
        // Copies to aligned word buffers (2400 is a multiple of 4, so the ciphertexts already are,
        // but the copy keeps the harness independent of that).
        u32 *cts = (u32 *)malloc(n * MLKEM768_CT_BYTES + 4);
        u32 *ss = (u32 *)malloc(n * MLKEM768_SS_BYTES + 4);
        if (cts == NULL || ss == NULL) {
            return fail("out of memory");
        }
        memcpy(cts, in + MLKEM768_DK_BYTES, n * MLKEM768_CT_BYTES);
        if (mlkem768_decaps_host(in, cts, n, ss, (unsigned)nthreads) != 0) {
            return fail("decapsulation failed to start");
        }
        out = (u8 *)ss;
        out_len = n * MLKEM768_SS_BYTES;
        free(cts);
    } else if (strcmp(mode, "ntt") == 0) {
        if (run_ntt(in, len, &out, &out_len) != 0) {
            return fail("the input is not pairs of 256 coefficients below q");
        }
    } else if (strcmp(mode, "hash") == 0) {
        if (run_hash(in, len, &out, &out_len) != 0) {
            return fail("the input is not m || h || z || c (1184 bytes)");
        }
    } else {
        return fail("unknown mode; use decaps, ntt or hash");
    }
    memset(in, 0, len);
    free(in);
    int rc = write_file(output, out, out_len) == 0 ? 0 : 2;
    memset(out, 0, out_len);
    free(out);
    return rc == 0 ? 0 : fail("cannot write the output file");
}
