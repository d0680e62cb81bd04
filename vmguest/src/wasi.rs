//! Guest routines beyond the generated page: the HostCall trampoline of the exit-less ring, and
//! exit-free WASI routines, run in the guest: `args_*`, `environ_*`, `clock_time_get` and
//! `clock_res_get` for the realtime and monotonic clocks (TSC + host calibration), and
//! `random_get` (RDRAND). They are position-independent: the host copies the bytes between
//! `wasce_guest_wasi_start` and `wasce_guest_wasi_end` into the runtime page at `RT_WASI`.
//!
//! Entry (as compiled code calls an import, in Cranelift's `tail` convention, which assigns
//! register arguments, the return register and the callee-saved registers as System V does;
//! these routines take no stack arguments): rdi = context (`WCTX_*`), rsi = caller vmctx, rdx,
//! rcx, r8, r9 = the WASI arguments (i32 values, upper bits undefined). Return eax = errno. Every guest pointer is bounds-checked against the caller's memory length before
//! anything is written; on any doubt the routine jumps to `fallback` with rdi..r9 as they were,
//! which tail-calls the host-call trampoline: the host then handles the call (and its errno).

/// Largest `memory.copy`/`memory.fill` done with 16-byte moves, 64 bytes a time; longer ones
/// use `rep movsb`/`rep stosb`, whose start-up cost (tens of cycles) is then paid back.
const VECTOR_MAX: u64 = 2048;

core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl wasce_guest_wasi_start",
    "wasce_guest_wasi_start:",

    // Tail-call the host implementation with the original arguments.
    "2:",
    "mov rax, [rdi + 16]",      // WCTX_FALLBACK_CODE
    "mov rdi, [rdi + 24]",      // WCTX_FALLBACK_VMCTX
    "jmp rax",

    // (ptr: edx, ptr: ecx) <- (u32 at data+COUNT, u32 at data+SIZE)
    ".macro sizes_get count, size",
    "mov r10, [rdi]",
    "test r10, r10",
    "jz 2b",
    "mov r11, [r10 + 8]",
    "mov eax, edx",
    "add rax, 4",
    "cmp rax, r11",
    "ja 2b",
    "mov eax, ecx",
    "add rax, 4",
    "cmp rax, r11",
    "ja 2b",
    "mov r10, [r10]",
    "mov r11, [rdi + 8]",
    "mov edx, edx",
    "mov ecx, ecx",
    "mov eax, [r11 + \\count]",
    "mov [r10 + rdx], eax",
    "mov eax, [r11 + \\size]",
    "mov [r10 + rcx], eax",
    "xor eax, eax",
    "ret",
    ".endm",

    // (argv: edx, buf: ecx): pointers buf+offset[i] at argv[i], then the strings at buf.
    ".macro strings_get count, size, blob, offsets",
    "mov r10, [rdi]",
    "test r10, r10",
    "jz 2b",
    "mov r11, [rdi + 8]",
    "mov r8d, edx",
    "mov eax, [r11 + \\count]",
    "lea rax, [r8 + rax * 4]",
    "cmp rax, [r10 + 8]",
    "ja 2b",
    "mov r9d, ecx",
    "mov eax, [r11 + \\size]",
    "add rax, r9",
    "cmp rax, [r10 + 8]",
    "ja 2b",
    "mov r10, [r10]",
    "mov rsi, [r11 + \\offsets]",
    "xor eax, eax",
    "3:",
    "cmp eax, [r11 + \\count]",
    "jae 4f",
    "mov edx, [rsi + rax * 4]",
    "add edx, r9d",
    "mov [r10 + r8], edx",
    "add r8, 4",
    "inc eax",
    "jmp 3b",
    "4:",
    "mov ecx, [r11 + \\size]",
    "mov rsi, [r11 + \\blob]",
    "lea rdi, [r10 + r9]",
    "rep movsb",
    "xor eax, eax",
    "ret",
    ".endm",

    ".globl wasce_guest_args_sizes_get",
    "wasce_guest_args_sizes_get:",
    "sizes_get 0, 4",
    ".globl wasce_guest_environ_sizes_get",
    "wasce_guest_environ_sizes_get:",
    "sizes_get 8, 12",
    ".globl wasce_guest_args_get",
    "wasce_guest_args_get:",
    "strings_get 0, 4, 16, 24",
    ".globl wasce_guest_environ_get",
    "wasce_guest_environ_get:",
    "strings_get 8, 12, 32, 40",

    // clock_time_get(id: edx, precision: rcx, out: r8d)
    ".globl wasce_guest_clock_time_get",
    "wasce_guest_clock_time_get:",
    "cmp edx, 1",
    "ja 2b",
    "mov r10, [rdi]",
    "test r10, r10",
    "jz 2b",
    "mov eax, r8d",
    "add rax, 8",
    "cmp rax, [r10 + 8]",
    "ja 2b",
    "mov r11, [rdi + 8]",
    "mov r9d, edx",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, [r11 + 48]",      // WD_TSC_BASE
    "jae 5f",
    "xor eax, eax",
    "5:",
    "mul qword ptr [r11 + 56]", // WD_TSC_MULT
    "shrd rax, rdx, 32",
    "add rax, [r11 + 64 + r9 * 8]", // WD_CLOCK_BASE[id]
    "mov r10, [r10]",
    "mov r8d, r8d",
    "mov [r10 + r8], rax",
    "xor eax, eax",
    "ret",

    // clock_res_get(id: edx, out: ecx): 1 ns, as the host reports for these clocks.
    ".globl wasce_guest_clock_res_get",
    "wasce_guest_clock_res_get:",
    "cmp edx, 1",
    "ja 2b",
    "mov r10, [rdi]",
    "test r10, r10",
    "jz 2b",
    "mov eax, ecx",
    "add rax, 8",
    "cmp rax, [r10 + 8]",
    "ja 2b",
    "mov r10, [r10]",
    "mov ecx, ecx",
    "mov qword ptr [r10 + rcx], 1",
    "xor eax, eax",
    "ret",

    // random_get(buf: edx, len: ecx)
    ".globl wasce_guest_random_get",
    "wasce_guest_random_get:",
    "mov r10, [rdi]",
    "test r10, r10",
    "jz 2b",
    "mov eax, edx",
    "mov r11d, ecx",
    "add rax, r11",
    "cmp rax, [r10 + 8]",
    "ja 2b",
    "mov r8d, edx",             // keep the arguments for a fallback
    "mov r9d, ecx",
    "mov r10, [r10]",
    "add r10, r8",
    "mov ecx, ecx",
    "6:",
    "cmp rcx, 8",
    "jb 7f",
    "rdrand rax",
    "jnc 8f",
    "mov [r10], rax",
    "add r10, 8",
    "sub rcx, 8",
    "jmp 6b",
    "7:",
    "test rcx, rcx",
    "jz 9f",
    "rdrand rax",
    "jnc 8f",
    "10:",
    "mov [r10], al",
    "inc r10",
    "shr rax, 8",
    "dec rcx",
    "jnz 10b",
    "9:",
    "xor eax, eax",
    "ret",
    "8:",                       // RDRAND ran dry: let the host fill the whole buffer
    "mov edx, r8d",
    "mov ecx, r9d",
    "jmp 2b",

    // The HostCall builtin over the ring (rdi = caller vmctx, rsi = function, rdx = values):
    // submit, poll, and on a slow or sleeping server fall back to the synchronous hypercall.
    ".globl wasce_guest_ring_hostcall",
    "wasce_guest_ring_hostcall:",
    "mov r8, {ring}",
    "cmp dword ptr [r8 + {awake}], 0",
    "je 20f",
    "mov [r8 + {func}], rsi",
    "mov [r8 + {values}], rdx",
    "mov [r8 + {caller}], rdi",
    "mov dword ptr [r8 + {state}], {submitted}",
    "mov ecx, {spin}",
    "21:",
    "cmp dword ptr [r8 + {state}], {done}",
    "je 23f",
    "pause",
    "dec ecx",
    "jnz 21b",
    "mov eax, {submitted}",
    "mov r9d, {cancelled}",
    "lock cmpxchg dword ptr [r8 + {state}], r9d",
    "je 24f",
    "22:",                          // the server has it: wait in the host, not here
    "cmp dword ptr [r8 + {state}], {done}",
    "je 23f",
    "mov r10, {wait}",
    "mov rax, [r10]",
    "jmp 22b",
    "23:",
    "mov rax, [r8 + {result}]",
    "mov dword ptr [r8 + {state}], {idle}",
    "ret",
    "24:",
    "mov dword ptr [r8 + {state}], {idle}",
    "20:",
    "mov r10, {hostcall}",
    "mov rax, [r10]",
    "ret",

    // The bounds checks of memory.fill and memory.copy, shared by each routine and its AVX2
    // twin. fill (rsi = the definition, rdx = dst, r8 = len): out of bounds jumps to the next
    // `30:`; else rdi = the host address. copy (rsi, rdx = the definitions, rcx = dst, r8 = src,
    // r9 = len): out of bounds jumps to the next `31:`; else r10, r11 = the host addresses of
    // dst and src, rcx = len.
    ".macro fill_check",
    "mov rax, rdx",
    "add rax, r8",
    "jc 30f",
    "cmp rax, [rsi + 8]",
    "ja 30f",
    "mov rdi, [rsi]",
    "add rdi, rdx",
    ".endm",
    ".macro copy_check",
    "mov rax, rcx",
    "add rax, r9",
    "jc 31f",
    "cmp rax, [rsi + 8]",
    "ja 31f",
    "mov rax, r8",
    "add rax, r9",
    "jc 31f",
    "cmp rax, [rdx + 8]",
    "ja 31f",
    "mov r10, [rsi]",
    "add r10, rcx",
    "mov r11, [rdx]",
    "add r11, r8",
    "mov rcx, r9",
    ".endm",
    // The forward copy's choice, shared by each copy routine and its AVX2 twin (r10, r11 = the
    // host addresses of dst and src, rcx = len): `rep movsb` (jump to the next `32:`) for a
    // copy longer than `limit` whose destination does not overlap the source from below, else
    // the vector loop (fall through to the next `49:`).
    ".macro rep_unless_close limit",
    "cmp rcx, \\limit",
    "jbe 49f",
    "mov rax, r11",
    "sub rax, r10",
    "cmp rax, rcx",
    "jae 32f",
    ".endm",

    // memory.fill (rdi = vmctx, rsi = VMMemoryDef, rdx = dst, rcx = byte, r8 = len): bounds
    // check against the definition, then overlapping 1-16-byte stores up to 64 bytes, 16-byte
    // stores 64 bytes a time up to `VECTOR_MAX` (a short `rep stosb` costs tens of cycles to
    // start), `rep stosb` above. Returns 0, or 1 (out of bounds).
    ".globl wasce_guest_memory_fill",
    "wasce_guest_memory_fill:",
    ".Lmemory_fill_sse:",
    "fill_check",
    "movzx eax, cl",
    "mov rdx, 0x0101010101010101",
    "imul rax, rdx",
    "cmp r8, 16",
    "ja 36f",
    "cmp r8, 8",
    "jb 37f",
    "mov [rdi], rax",
    "mov [rdi + r8 - 8], rax",
    "jmp 39f",
    "37:",
    "cmp r8, 4",
    "jb 38f",
    "mov [rdi], eax",
    "mov [rdi + r8 - 4], eax",
    "jmp 39f",
    "38:",
    "test r8, r8",
    "jz 39f",
    "mov [rdi], al",
    "mov [rdi + r8 - 1], al",
    "cmp r8, 2",
    "jbe 39f",
    "mov [rdi + 1], al",
    "jmp 39f",
    "36:",
    "cmp r8, 64",
    "ja 35f",
    "movq xmm0, rax",
    "punpcklqdq xmm0, xmm0",
    "movups [rdi], xmm0",
    "movups [rdi + r8 - 16], xmm0",
    "cmp r8, 32",
    "jbe 39f",
    "movups [rdi + 16], xmm0",
    "movups [rdi + r8 - 32], xmm0",
    "jmp 39f",
    "35:",
    "cmp r8, {vector_max}",
    "ja 34f",
    // 65..=vector_max bytes: the last 64 first, then 64 a time from the start (overlapping
    // the last 64 is harmless: the same byte).
    "movq xmm0, rax",
    "punpcklqdq xmm0, xmm0",
    "movups [rdi + r8 - 64], xmm0",
    "movups [rdi + r8 - 48], xmm0",
    "movups [rdi + r8 - 32], xmm0",
    "movups [rdi + r8 - 16], xmm0",
    "lea rdx, [r8 - 64]",
    "xor ecx, ecx",
    "33:",
    "movups [rdi + rcx], xmm0",
    "movups [rdi + rcx + 16], xmm0",
    "movups [rdi + rcx + 32], xmm0",
    "movups [rdi + rcx + 48], xmm0",
    "add rcx, 64",
    "cmp rcx, rdx",
    "jb 33b",
    "jmp 39f",
    "34:",
    "mov rcx, r8",
    "rep stosb",
    "39:",
    "xor eax, eax",
    "ret",
    "30:",
    "mov eax, 1",
    "ret",

    // memory.copy (rdi = vmctx, rsi = dst def, rdx = src def, rcx = dst, r8 = src, r9 = len):
    // both ranges checked. Up to 64 bytes: every byte loaded (overlapping 1-16-byte loads)
    // before any is stored, which is right for any overlap. Above: when the destination
    // overlaps the source from above, 64 bytes a time from the end; otherwise 64 bytes a time
    // from the start, except `rep movsb` (fast forwards on every current x86) for ranges apart
    // and longer than `VECTOR_MAX` bytes. Each chunk is loaded before anything that overlaps it
    // is stored, so any distance works.
    ".globl wasce_guest_memory_copy",
    "wasce_guest_memory_copy:",
    ".Lmemory_copy_sse:",
    "copy_check",
    "cmp rcx, 16",
    "ja 40f",
    "cmp rcx, 8",
    "jb 41f",
    "mov rax, [r11]",
    "mov rdx, [r11 + rcx - 8]",
    "mov [r10], rax",
    "mov [r10 + rcx - 8], rdx",
    "jmp 35f",
    "41:",
    "cmp rcx, 4",
    "jb 42f",
    "mov eax, [r11]",
    "mov edx, [r11 + rcx - 4]",
    "mov [r10], eax",
    "mov [r10 + rcx - 4], edx",
    "jmp 35f",
    "42:",
    "test rcx, rcx",
    "jz 35f",
    "cmp rcx, 2",
    "jb 43f",
    "movzx eax, word ptr [r11]",
    "movzx edx, word ptr [r11 + rcx - 2]",
    "mov [r10], ax",
    "mov [r10 + rcx - 2], dx",
    "jmp 35f",
    "43:",
    "movzx eax, byte ptr [r11]",
    "mov [r10], al",
    "jmp 35f",
    "40:",
    "cmp rcx, 32",
    "ja 44f",
    "movups xmm0, [r11]",
    "movups xmm1, [r11 + rcx - 16]",
    "movups [r10], xmm0",
    "movups [r10 + rcx - 16], xmm1",
    "jmp 35f",
    "44:",
    "cmp rcx, 64",
    "ja 46f",
    "movups xmm0, [r11]",
    "movups xmm1, [r11 + 16]",
    "movups xmm2, [r11 + rcx - 32]",
    "movups xmm3, [r11 + rcx - 16]",
    "movups [r10], xmm0",
    "movups [r10 + 16], xmm1",
    "movups [r10 + rcx - 32], xmm2",
    "movups [r10 + rcx - 16], xmm3",
    "jmp 35f",
    "46:",
    "mov rax, r10",
    "sub rax, r11",
    "jbe 47f",
    "cmp rax, rcx",
    "jae 47f",
    // The destination overlaps the source from above: 64 bytes a time from the end; the
    // lowest 64 source bytes are loaded first and stored last (over what the loop stored
    // there, the same bytes), so no byte-at-a-time tail.
    "movups xmm4, [r11]",
    "movups xmm5, [r11 + 16]",
    "movups xmm6, [r11 + 32]",
    "movups xmm7, [r11 + 48]",
    "33:",
    "sub rcx, 64",
    "movups xmm0, [r11 + rcx]",
    "movups xmm1, [r11 + rcx + 16]",
    "movups xmm2, [r11 + rcx + 32]",
    "movups xmm3, [r11 + rcx + 48]",
    "movups [r10 + rcx], xmm0",
    "movups [r10 + rcx + 16], xmm1",
    "movups [r10 + rcx + 32], xmm2",
    "movups [r10 + rcx + 48], xmm3",
    "cmp rcx, 64",
    "ja 33b",
    "jmp 48f",
    // Forwards: 64 bytes a time from the start, up to `VECTOR_MAX` bytes (`rep movsb` costs
    // tens of cycles to start) and whenever the destination overlaps the source from below
    // (`rep movsb` leaves its fast path when the ranges are close); the highest 64 source bytes
    // are loaded first and stored last, so that such a destination still gets them as they
    // were.
    "47:",
    "rep_unless_close {vector_max}",
    "49:",
    "movups xmm4, [r11 + rcx - 64]",
    "movups xmm5, [r11 + rcx - 48]",
    "movups xmm6, [r11 + rcx - 32]",
    "movups xmm7, [r11 + rcx - 16]",
    "lea rdx, [rcx - 64]",
    "xor eax, eax",
    "34:",
    "movups xmm0, [r11 + rax]",
    "movups xmm1, [r11 + rax + 16]",
    "movups xmm2, [r11 + rax + 32]",
    "movups xmm3, [r11 + rax + 48]",
    "movups [r10 + rax], xmm0",
    "movups [r10 + rax + 16], xmm1",
    "movups [r10 + rax + 32], xmm2",
    "movups [r10 + rax + 48], xmm3",
    "add rax, 64",
    "cmp rax, rdx",
    "jb 34b",
    "add r10, rcx",
    "sub r10, 64",
    "48:",
    "movups [r10], xmm4",
    "movups [r10 + 16], xmm5",
    "movups [r10 + 32], xmm6",
    "movups [r10 + 48], xmm7",
    "jmp 35f",
    "32:",
    "mov rsi, r11",
    "mov rdi, r10",
    "rep movsb",
    "35:",
    "xor eax, eax",
    "ret",
    "31:",
    "mov eax, 1",
    "ret",

    // The same two routines with 32-byte AVX2 moves, 128 bytes a time, for hosts (and guests)
    // with AVX enabled: the SSE routines above do 128 bytes and less (and every bounds check
    // of those); these, longer ones, with `rep` for the same cases scaled to `VECTOR_MAX * 2`.
    // `vzeroupper` before returning, so that no SSE code after pays for dirty upper halves.
    ".globl wasce_guest_memory_fill_avx2",
    "wasce_guest_memory_fill_avx2:",
    "cmp r8, 128",
    "jbe .Lmemory_fill_sse",
    "fill_check",
    "cmp r8, {vector_max} * 2",
    "ja 34f",
    "movzx eax, cl",
    "vmovd xmm0, eax",
    "vpbroadcastb ymm0, xmm0",
    "vmovdqu [rdi + r8 - 128], ymm0",
    "vmovdqu [rdi + r8 - 96], ymm0",
    "vmovdqu [rdi + r8 - 64], ymm0",
    "vmovdqu [rdi + r8 - 32], ymm0",
    "lea rdx, [r8 - 128]",
    "xor ecx, ecx",
    "33:",
    "vmovdqu [rdi + rcx], ymm0",
    "vmovdqu [rdi + rcx + 32], ymm0",
    "vmovdqu [rdi + rcx + 64], ymm0",
    "vmovdqu [rdi + rcx + 96], ymm0",
    "sub rcx, -128",
    "cmp rcx, rdx",
    "jb 33b",
    "vzeroupper",
    "xor eax, eax",
    "ret",
    "34:",
    "movzx eax, cl",
    "mov rcx, r8",
    "rep stosb",
    "xor eax, eax",
    "ret",
    "30:",
    "mov eax, 1",
    "ret",

    ".globl wasce_guest_memory_copy_avx2",
    "wasce_guest_memory_copy_avx2:",
    "cmp r9, 128",
    "jbe .Lmemory_copy_sse",
    "copy_check",
    "mov rax, r10",
    "sub rax, r11",
    "jbe 47f",
    "cmp rax, rcx",
    "jae 47f",
    // Backwards (the destination overlaps the source from above), as in the SSE routine.
    "vmovdqu ymm4, [r11]",
    "vmovdqu ymm5, [r11 + 32]",
    "vmovdqu ymm6, [r11 + 64]",
    "vmovdqu ymm7, [r11 + 96]",
    "33:",
    "add rcx, -128",
    "vmovdqu ymm0, [r11 + rcx]",
    "vmovdqu ymm1, [r11 + rcx + 32]",
    "vmovdqu ymm2, [r11 + rcx + 64]",
    "vmovdqu ymm3, [r11 + rcx + 96]",
    "vmovdqu [r10 + rcx], ymm0",
    "vmovdqu [r10 + rcx + 32], ymm1",
    "vmovdqu [r10 + rcx + 64], ymm2",
    "vmovdqu [r10 + rcx + 96], ymm3",
    "cmp rcx, 128",
    "ja 33b",
    "jmp 48f",
    // Forwards, as in the SSE routine.
    "47:",
    "rep_unless_close ({vector_max}*2)",
    "49:",
    "vmovdqu ymm4, [r11 + rcx - 128]",
    "vmovdqu ymm5, [r11 + rcx - 96]",
    "vmovdqu ymm6, [r11 + rcx - 64]",
    "vmovdqu ymm7, [r11 + rcx - 32]",
    "lea rdx, [rcx - 128]",
    "xor eax, eax",
    "34:",
    "vmovdqu ymm0, [r11 + rax]",
    "vmovdqu ymm1, [r11 + rax + 32]",
    "vmovdqu ymm2, [r11 + rax + 64]",
    "vmovdqu ymm3, [r11 + rax + 96]",
    "vmovdqu [r10 + rax], ymm0",
    "vmovdqu [r10 + rax + 32], ymm1",
    "vmovdqu [r10 + rax + 64], ymm2",
    "vmovdqu [r10 + rax + 96], ymm3",
    "sub rax, -128",
    "cmp rax, rdx",
    "jb 34b",
    "add r10, rcx",
    "add r10, -128",
    "48:",
    "vmovdqu [r10], ymm4",
    "vmovdqu [r10 + 32], ymm5",
    "vmovdqu [r10 + 64], ymm6",
    "vmovdqu [r10 + 96], ymm7",
    "vzeroupper",
    "xor eax, eax",
    "ret",
    "32:",
    "mov rsi, r11",
    "mov rdi, r10",
    "rep movsb",
    "xor eax, eax",
    "ret",
    "31:",
    "mov eax, 1",
    "ret",

    ".globl wasce_guest_wasi_end",
    "wasce_guest_wasi_end:",
    ring = const wasce_hypercall::RING_GVA,
    awake = const wasce_hypercall::RING_AWAKE,
    func = const wasce_hypercall::RING_FUNC,
    values = const wasce_hypercall::RING_VALUES,
    caller = const wasce_hypercall::RING_CALLER,
    result = const wasce_hypercall::RING_RESULT,
    state = const wasce_hypercall::RING_STATE,
    idle = const wasce_hypercall::RING_IDLE,
    submitted = const wasce_hypercall::RING_SUBMITTED,
    done = const wasce_hypercall::RING_DONE,
    cancelled = const wasce_hypercall::RING_CANCELLED,
    spin = const wasce_hypercall::RING_SPIN,
    wait = const wasce_hypercall::hcall_address(wasce_hypercall::HCALL_RING_WAIT),
    hostcall = const wasce_hypercall::hcall_address(wasce_hypercall::HCALL_HOST_CALL),
    vector_max = const VECTOR_MAX,
);

unsafe extern "C" {
    static wasce_guest_wasi_start: u8;
    static wasce_guest_wasi_end: u8;
    static wasce_guest_args_sizes_get: u8;
    static wasce_guest_environ_sizes_get: u8;
    static wasce_guest_args_get: u8;
    static wasce_guest_environ_get: u8;
    static wasce_guest_clock_time_get: u8;
    static wasce_guest_clock_res_get: u8;
    static wasce_guest_random_get: u8;
    static wasce_guest_ring_hostcall: u8;
    static wasce_guest_memory_fill: u8;
    static wasce_guest_memory_copy: u8;
    static wasce_guest_memory_fill_avx2: u8;
    static wasce_guest_memory_copy_avx2: u8;
}

/// The routines' machine code.
pub fn routines() -> &'static [u8] {
    // SAFETY: both symbols delimit the .text bytes emitted by the global_asm above.
    unsafe {
        let start = &raw const wasce_guest_wasi_start;
        let end = &raw const wasce_guest_wasi_end;
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// The `memory.fill` and `memory.copy` routines as functions of this process: (fill, copy),
/// the AVX2 ones with `avx2` (the caller checks that the CPU has AVX2 and the kernel saves the
/// YMM state). They use nothing but their arguments (System V: vmctx, then the builtin's
/// arguments, the memory definitions' addresses first) and return the builtin's status, so
/// process mode calls them as its builtins too, without a trip through the store's dispatcher.
pub fn bulk_memory_routines(avx2: bool) -> (usize, usize) {
    if avx2 {
        (&raw const wasce_guest_memory_fill_avx2 as usize, &raw const wasce_guest_memory_copy_avx2 as usize)
    } else {
        (&raw const wasce_guest_memory_fill as usize, &raw const wasce_guest_memory_copy as usize)
    }
}

/// The names (for `routine_offset`) of the `memory.fill` and `memory.copy` routines for a
/// guest: the AVX2 ones with `avx2` (the CPU has AVX2 and the guest's XCR0 enables AVX).
pub fn bulk_memory_routine_names(avx2: bool) -> (&'static str, &'static str) {
    if avx2 {
        ("(memory fill avx2)", "(memory copy avx2)")
    } else {
        ("(memory fill)", "(memory copy)")
    }
}

/// Offset of the HostCall-over-the-ring trampoline in `routines()`.
pub fn ring_hostcall_offset() -> u64 {
    routine_offset("(ring hostcall)").expect("defined above")
}

/// Offset of the routine serving WASI function `name` in `routines()`, if there is one.
pub fn routine_offset(name: &str) -> Option<u64> {
    // Only the symbols' addresses are taken.
    let (start, sym) = {
        let start = &raw const wasce_guest_wasi_start as usize;
        let sym = match name {
            "args_sizes_get" => &raw const wasce_guest_args_sizes_get,
            "environ_sizes_get" => &raw const wasce_guest_environ_sizes_get,
            "args_get" => &raw const wasce_guest_args_get,
            "environ_get" => &raw const wasce_guest_environ_get,
            "clock_time_get" => &raw const wasce_guest_clock_time_get,
            "clock_res_get" => &raw const wasce_guest_clock_res_get,
            "random_get" => &raw const wasce_guest_random_get,
            "(ring hostcall)" => &raw const wasce_guest_ring_hostcall,
            "(memory fill)" => &raw const wasce_guest_memory_fill,
            "(memory copy)" => &raw const wasce_guest_memory_copy,
            "(memory fill avx2)" => &raw const wasce_guest_memory_fill_avx2,
            "(memory copy avx2)" => &raw const wasce_guest_memory_copy_avx2,
            _ => return None,
        };
        (start, sym as usize)
    };
    Some((sym - start) as u64)
}

#[cfg(test)]
mod tests {
    //! Both sets of bulk-memory routines, called directly in this process: every length class
    //! and overlap distance against `memmove`/`memset`, and the bounds checks. (The engine's
    //! `tests/bulk_memory.rs` runs them from compiled code in both modes, but only the set this
    //! host picks.)
    extern crate std;
    use super::*;
    use std::vec::Vec;

    type Fill = unsafe extern "sysv64" fn(u64, *const [u64; 2], u64, u64, u64) -> u64;
    type Copy = unsafe extern "sysv64" fn(u64, *const [u64; 2], *const [u64; 2], u64, u64, u64) -> u64;

    fn sets() -> Vec<(&'static str, Fill, Copy)> {
        let mut sets = Vec::new();
        for (name, avx2) in [("sse", false), ("avx2", true)] {
            if avx2 && !std::arch::is_x86_feature_detected!("avx2") {
                std::eprintln!("this CPU has no AVX2: only the SSE routines are tested");
                continue;
            }
            let (fill, copy) = bulk_memory_routines(avx2);
            // SAFETY: the addresses of the routines, which follow the System V convention with
            // these arguments (see the comments above each in the assembly).
            sets.push(unsafe { (name, std::mem::transmute::<usize, Fill>(fill), std::mem::transmute::<usize, Copy>(copy)) });
        }
        sets
    }

    const SIZE: usize = 20_000;

    fn lengths() -> Vec<u64> {
        let mut v: Vec<u64> = (0..=300).collect();
        v.extend([383, 384, 385, 511, 512, 513, 1000, 2047, 2048, 2049, 4095, 4096, 4097, 4200, 8000, 9000]);
        v
    }

    fn pattern() -> Vec<u8> {
        (0..SIZE).map(|i| (i ^ (i >> 8) ^ 0x5a) as u8).collect()
    }

    #[test]
    fn copy_is_memmove() {
        for (name, _, copy) in sets() {
            for len in lengths() {
                for delta in [-200i64, -129, -128, -127, -65, -64, -63, -33, -32, -31, -17, -16, -15, -1, 0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 10_000] {
                    let mut mem = pattern();
                    let def = [mem.as_mut_ptr() as u64, SIZE as u64];
                    let (dst, src) = if delta >= 0 { (500 + delta.unsigned_abs(), 500) } else { (500, 500 + delta.unsigned_abs()) };
                    // SAFETY: both ranges lie inside `mem` (checked by the routine as well).
                    let status = unsafe { copy(0, &def, &def, dst, src, len) };
                    assert_eq!(status, 0, "{name}: copy dst {dst} src {src} len {len}");
                    let mut want = pattern();
                    want.copy_within(src as usize..(src + len) as usize, dst as usize);
                    assert!(mem == want, "{name}: copy dst {dst} src {src} len {len}");
                }
            }
        }
    }

    #[test]
    fn fill_is_memset() {
        for (name, fill, _) in sets() {
            for len in lengths() {
                for dst in [0u64, 7, 1000] {
                    let mut mem = pattern();
                    let def = [mem.as_mut_ptr() as u64, SIZE as u64];
                    // SAFETY: the range lies inside `mem` (checked by the routine as well).
                    let status = unsafe { fill(0, &def, dst, 0x3c7, len) };
                    assert_eq!(status, 0, "{name}: fill {dst} len {len}");
                    let mut want = pattern();
                    want[dst as usize..(dst + len) as usize].fill(0xc7);
                    assert!(mem == want, "{name}: fill {dst} len {len}");
                }
            }
        }
    }

    #[test]
    fn out_of_bounds_moves_nothing() {
        for (name, fill, copy) in sets() {
            for len in [1u64, 100, 300, 5000] {
                let mut mem = pattern();
                let def = [mem.as_mut_ptr() as u64, SIZE as u64];
                let end = SIZE as u64 - len + 1;
                // SAFETY: the routines must refuse each range (one byte past the end, or
                // wrapping), touching nothing.
                unsafe {
                    assert_eq!(fill(0, &def, end, 0, len), 1, "{name}: fill at {end} len {len}");
                    assert_eq!(fill(0, &def, u64::MAX - len / 2, 0, len), 1, "{name}: wrapping fill len {len}");
                    assert_eq!(copy(0, &def, &def, end, 0, len), 1, "{name}: copy to {end} len {len}");
                    assert_eq!(copy(0, &def, &def, 0, end, len), 1, "{name}: copy from {end} len {len}");
                    assert_eq!(copy(0, &def, &def, 0, u64::MAX - len / 2, len), 1, "{name}: wrapping copy len {len}");
                }
                assert!(mem == pattern(), "{name}: a refused move wrote");
            }
        }
    }
}
