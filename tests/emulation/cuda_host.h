// Builds trainnet's CUDA sources as host C++ for the emulated backend (tests/emulation).
//
// A launch runs every block of the grid, one after another, and every block with its real
// blockDim.x threads, each CUDA thread a fiber on its own stack.  A thread runs until it
// reaches __syncthreads() or returns; when every thread of the block waits at the barrier they
// all go on.  __shared__ variables live in one section ("emu_shared"), shared by the threads of
// the block running, and are poisoned (0xFF bytes: NaN floats, -1 ints) before each block.
//
// Shared-memory checking: backend.py compiles a source that declares __shared__ memory with
// GCC's -fsanitize=thread instrumentation, and the __tsan_* hooks below see every load and
// store.  A hook ignores addresses outside the shared section; inside it keeps, per 4-byte
// word and per barrier epoch, the last writer and the readers, and records an error for
//   - a read of a word another thread wrote since the last barrier (or the reverse),
//   - two threads writing one word between barriers with different values,
//   - a read of a word no thread of the block wrote,
//   - threads of one block waiting at different __syncthreads(), or some waiting while
//     others have returned.
// The kernel always runs to its end; backend.py then raises an error naming the kernel, the
// threads and (from the debug information) the source lines.
#include <cmath>
#include <cfloat>
#include <cstdint>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#include <ucontext.h>  // other machines: portable, slower (two system calls a switch)
#endif

#define EMU_HIDDEN __attribute__((visibility("hidden")))
#define EMU_NOSAN __attribute__((visibility("hidden"), no_sanitize_thread))
#define EMU_RUNTIME __attribute__((visibility("hidden"), no_sanitize_thread, noinline, noipa))
#define EMU_EXPORT __attribute__((visibility("default"), no_sanitize_thread, noinline, noipa))

struct emu_dim3 { unsigned x, y, z; };
EMU_HIDDEN emu_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0};
EMU_HIDDEN emu_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};

extern "C" char __start_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char emu_library_base[] __asm__("__ehdr_start") __attribute__((visibility("hidden")));

namespace emu {

// --- fibers ---------------------------------------------------------------------------------
#if defined(EMU_ASM_SWITCH)
// emu_switch(&save, to): pushes the callee-saved registers and the FP control words, saves the
// stack pointer to *save, loads `to` and pops that context's.  No system call (swapcontext
// makes two), so a block of 64 threads costs microseconds.
extern "C" void emu_switch(void** save, void* to) EMU_HIDDEN;
asm(".text\n.p2align 4\n.globl emu_switch\n.hidden emu_switch\n.type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n.size emu_switch, .-emu_switch\n");
#endif

const size_t STACK = 256 << 10;  // per CUDA thread (pages are mapped as they are touched)
const int MAX_THREADS = 1024;
const int MULTI = -2;          // more than one thread read the word in this epoch
const int MAX_PENDING = 4096;

struct Fiber {
    char* stack;
#if defined(EMU_ASM_SWITCH)
    void* sp;
#else
    ucontext_t ctx;
#endif
    bool done, waiting;
    int line;  // of the __syncthreads() it waits at
};

struct Word {  // shadow of one 4-byte word of shared memory
    uint64_t w_epoch, r_epoch;  // 0: never
    int w_tid, r_tid, r_first;  // r_tid: the reader, or MULTI; r_first: the first reader
    const void *w_pc, *r_pc;
};

struct Pending {  // two writers of one word in one epoch: the same value, or a race
    size_t word;
    uint32_t before;
    int tid_a, tid_b;
    const void *pc_a, *pc_b;
};

struct State {
    Fiber fibers[MAX_THREADS];
#if defined(EMU_ASM_SWITCH)
    void* main_sp;
#else
    ucontext_t main_ctx;
#endif
    void (*body)(void*);
    void* ctx;
    int current;
    uint64_t epoch, block_start;  // epochs only grow: a word's epochs say when it was touched
    Word* shadow;
    size_t words;
    Pending pending[MAX_PENDING];
    int npending;
    Pending unset[MAX_PENDING];  // reads of words no thread of the block had written yet
    int nunset;
    char error[1024];
    int errors;
};
EMU_HIDDEN State state;

EMU_NOSAN inline void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
EMU_NOSAN inline void fail(const char* fmt, ...) {
    if (state.errors++ > 0) return;  // the first one is reported
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(state.error, sizeof state.error, fmt, ap);
    va_end(ap);
}

// pc@<address in this library> for backend.py to turn into file:line
EMU_NOSAN inline long pc_offset(const void* pc) {
    return pc ? (long)((const char*)pc - emu_library_base) : -1;
}

EMU_NOSAN inline void access(const void* p, size_t size, bool write, const void* pc) {
    const char* a = (const char*)p;
    if (a < __start_emu_shared || a >= __stop_emu_shared || !state.shadow) return;
    const int t = state.current;
    const uint64_t e = state.epoch;
    const size_t first = (size_t)(a - __start_emu_shared) / 4;
    const size_t last = (size_t)(a + size - 1 - __start_emu_shared) / 4;
    for (size_t w = first; w <= last && w < state.words; ++w) {
        Word& s = state.shadow[w];
        if (write) {
            if (s.r_epoch == e && s.r_tid != t)
                fail("race: thread %d writes shared offset %zu (pc@%ld) that thread %d%s read "
                     "(pc@%ld) with no __syncthreads() between", t, w * 4, pc_offset(pc),
                     s.r_first, s.r_tid == MULTI ? " and others" : "", pc_offset(s.r_pc));
            if (s.w_epoch == e && s.w_tid != t && state.npending < MAX_PENDING) {
                Pending& q = state.pending[state.npending++];
                q.word = w;
                memcpy(&q.before, __start_emu_shared + w * 4, 4);
                q.tid_a = s.w_tid;
                q.tid_b = t;
                q.pc_a = s.w_pc;
                q.pc_b = pc;
            }
            s.w_epoch = e;
            s.w_tid = t;
            s.w_pc = pc;
        } else {
            if (s.w_epoch < state.block_start && state.nunset < MAX_PENDING)
                state.unset[state.nunset++] = {w, (uint32_t)0, t, t, pc, pc};
            else if (s.w_epoch == e && s.w_tid != t)
                fail("race: thread %d reads shared offset %zu (pc@%ld) that thread %d wrote "
                     "(pc@%ld) with no __syncthreads() between", t, w * 4, pc_offset(pc),
                     s.w_tid, pc_offset(s.w_pc));
            if (s.r_epoch == e) {
                if (s.r_tid != t) s.r_tid = MULTI;
            } else {
                s.r_epoch = e;
                s.r_tid = s.r_first = t;
                s.r_pc = pc;
            }
        }
    }
}

// The end of an epoch: two threads that wrote one word must have stored the same value.
EMU_NOSAN inline void close_epoch() {
    for (int i = 0; i < state.npending; ++i) {
        const Pending& p = state.pending[i];
        uint32_t now;
        memcpy(&now, __start_emu_shared + p.word * 4, 4);
        if (now != p.before)
            fail("race: threads %d (pc@%ld) and %d (pc@%ld) write different values to shared "
                 "offset %zu with no __syncthreads() between", p.tid_a, pc_offset(p.pc_a),
                 p.tid_b, pc_offset(p.pc_b), p.word * 4);
    }
    state.npending = 0;
    for (int i = 0; i < state.nunset; ++i) {  // unless another thread wrote it later: a race
        const Pending& p = state.unset[i];
        const Word& s = state.shadow[p.word];
        if (!(s.w_epoch == state.epoch && s.w_tid != p.tid_a))
            fail("read of uninitialized shared memory: thread %d reads shared offset %zu "
                 "(pc@%ld) that no thread of the block wrote", p.tid_a, p.word * 4,
                 pc_offset(p.pc_a));
    }
    state.nunset = 0;
    state.epoch++;
}

EMU_RUNTIME void to_main() {
#if defined(EMU_ASM_SWITCH)
    emu_switch(&state.fibers[state.current].sp, state.main_sp);
#else
    swapcontext(&state.fibers[state.current].ctx, &state.main_ctx);
#endif
}

EMU_RUNTIME void fiber_main() {
    state.body(state.ctx);
    state.fibers[state.current].done = true;
    to_main();
    abort();  // a finished fiber is never resumed
}

EMU_NOSAN inline void start(Fiber& f) {
    if (!f.stack) {  // a guard page below the stack: an overflow faults, it never corrupts
        const size_t guard = 65536;
        void* m = mmap(nullptr, STACK + guard, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED || mprotect(m, guard, PROT_NONE) != 0) abort();
        f.stack = (char*)m + guard;
    }
    f.done = f.waiting = false;
#if defined(EMU_ASM_SWITCH)
    // the frame emu_switch pops: FP control words, six registers, then a "return" into
    // fiber_main with the stack aligned as after a call
    uint64_t* sp = (uint64_t*)(f.stack + STACK - 64) - 9;
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    memset(sp, 0, 9 * sizeof(uint64_t));
    memcpy(sp, &mxcsr, 4);
    memcpy((char*)sp + 4, &fpucw, 2);
    sp[7] = (uint64_t)(void*)&fiber_main;
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = STACK;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, (void (*)())fiber_main, 0);
#endif
}

EMU_RUNTIME void resume(int t) {
    state.current = t;
    threadIdx.x = (unsigned)t;
#if defined(EMU_ASM_SWITCH)
    emu_switch(&state.main_sp, state.fibers[t].sp);
#else
    swapcontext(&state.main_ctx, &state.fibers[t].ctx);
#endif
}

// One block: run every thread to its next barrier, check they all wait at the same one, go on.
EMU_NOSAN inline void run_block(int threads) {
    for (int t = 0; t < threads; ++t) start(state.fibers[t]);
    if (__stop_emu_shared > __start_emu_shared)
        memset(__start_emu_shared, 0xFF, (size_t)(__stop_emu_shared - __start_emu_shared));
    state.block_start = state.epoch;
    for (;;) {
        int waiting = 0, done = 0, line = -1, other = -1;
        for (int t = 0; t < threads; ++t) {
            Fiber& f = state.fibers[t];
            if (f.done) {
                ++done;
                continue;
            }
            f.waiting = false;
            resume(t);
            if (f.waiting) {
                ++waiting;
                if (line < 0) line = f.line;
                else if (f.line != line && other < 0) other = t;
            } else {
                ++done;
            }
        }
        close_epoch();
        if (!waiting) break;
        if (other >= 0)
            fail("divergent __syncthreads(): threads of block %u wait at lines %d and %d",
                 blockIdx.x, line, state.fibers[other].line);
        else if (done)
            fail("__syncthreads() at line %d reached by %d threads of block %u while %d "
                 "returned", line, waiting, blockIdx.x, done);
    }
}

EMU_RUNTIME void run(void (*body)(void*), void* ctx) {
    const int threads = (int)blockDim.x;
    if (threads < 1 || threads > MAX_THREADS) {
        fail("blockDim.x %d is not in [1, %d]", threads, MAX_THREADS);
        return;
    }
    state.body = body;
    state.ctx = ctx;
    if (!state.shadow && __stop_emu_shared > __start_emu_shared) {
        state.words = (size_t)(__stop_emu_shared - __start_emu_shared + 3) / 4;
        state.shadow = (Word*)calloc(state.words, sizeof(Word));
        if (!state.shadow) abort();
    }
    state.epoch++;
    for (unsigned b = 0; b < gridDim.x; ++b) {
        blockIdx.x = b;
        run_block(threads);
    }
}

template <class F>
void launch(F&& f) {
    run([](void* p) { (*(F*)p)(); }, (void*)&f);
}

}  // namespace emu

extern "C" EMU_EXPORT void emu_configure(unsigned grid, unsigned block) {
    gridDim.x = grid;
    blockDim.x = block;
    emu::state.errors = 0;
}

// where the shared section starts, as an address in this library (for naming variables)
extern "C" EMU_EXPORT long emu_shared_base() {
    return __start_emu_shared ? (long)(__start_emu_shared - emu_library_base) : -1;
}

extern "C" EMU_EXPORT const char* emu_error() {
    return emu::state.errors ? emu::state.error : nullptr;
}

extern "C" EMU_RUNTIME void emu_syncthreads(int line) {
    emu::Fiber& f = emu::state.fibers[emu::state.current];
    f.waiting = true;
    f.line = line;
    emu::to_main();
}

// GCC's ThreadSanitizer instrumentation calls these around every load and store.
#define EMU_TSAN(kind, n, write)                                                              \
    extern "C" EMU_RUNTIME void __tsan_##kind##n(void* p) {                                   \
        emu::access(p, n, write, __builtin_return_address(0));                               \
    }                                                                                         \
    extern "C" EMU_RUNTIME void __tsan_unaligned_##kind##n(void* p) {                         \
        emu::access(p, n, write, __builtin_return_address(0));                               \
    }
EMU_TSAN(read, 1, false)
EMU_TSAN(read, 2, false)
EMU_TSAN(read, 4, false)
EMU_TSAN(read, 8, false)
EMU_TSAN(read, 16, false)
EMU_TSAN(write, 1, true)
EMU_TSAN(write, 2, true)
EMU_TSAN(write, 4, true)
EMU_TSAN(write, 8, true)
EMU_TSAN(write, 16, true)
#undef EMU_TSAN
extern "C" EMU_RUNTIME void __tsan_read_range(void* p, unsigned long n) {
    emu::access(p, n, false, __builtin_return_address(0));
}
extern "C" EMU_RUNTIME void __tsan_write_range(void* p, unsigned long n) {
    emu::access(p, n, true, __builtin_return_address(0));
}
extern "C" EMU_RUNTIME void __tsan_init() {}
extern "C" EMU_RUNTIME void __tsan_func_entry(void*) {}
extern "C" EMU_RUNTIME void __tsan_func_exit() {}
extern "C" EMU_RUNTIME void __tsan_vptr_update(void**, void*) {}
extern "C" EMU_RUNTIME void __tsan_vptr_read(void**) {}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static __attribute__((section("emu_shared")))
#define __restrict__ __restrict
// the memory clobber: a value read from shared memory before the barrier is read again after it
#define __syncthreads() \
    do { emu_syncthreads(__LINE__); __asm__ __volatile__("" ::: "memory"); } while (0)

// Threads of a block interleave only at barriers, so this is atomic as written; not seen by the
// shared-memory checker (atomics of several threads on one word are no race).
EMU_NOSAN inline float atomicAdd(float* p, float v) { float old = *p; *p += v; return old; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __int_as_float(int x) { union { int i; float f; } u; u.i = x; return u.f; }
inline int __float_as_int(float x) { union { int i; float f; } u; u.f = x; return u.i; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
using std::isnan;
using std::isinf;
