//! A few hand-encoded x86_64 instructions, enough to script flat CPL3 test guests
//! (hostile-guest tests, the hypercall benchmark) without an assembler.
use thaw_abi::{Hypercall, HYPERCALL_PORT};

/// Machine code being built; `Vm::load_flat(&asm.0)` runs it.
#[derive(Debug, Default, Clone)]
pub struct Asm(pub Vec<u8>);

impl Asm {
    /// `mov dx, v`
    pub fn mov_dx(mut self, v: u16) -> Self {
        self.0.extend([0x66, 0xba]);
        self.0.extend(v.to_le_bytes());
        self
    }
    /// `mov eax, v`
    pub fn mov_eax(mut self, v: u32) -> Self {
        self.0.push(0xb8);
        self.0.extend(v.to_le_bytes());
        self
    }
    /// `out dx, eax`
    pub fn out(mut self) -> Self {
        self.0.push(0xef);
        self
    }
    /// `in al, dx`
    pub fn input(mut self) -> Self {
        self.0.push(0xec);
        self
    }
    /// `mov rax, v; mov [addr], rax`
    pub fn store(mut self, addr: u64, v: u64) -> Self {
        self.0.extend([0x48, 0xb8]);
        self.0.extend(v.to_le_bytes());
        self.0.extend([0x48, 0xa3]);
        self.0.extend(addr.to_le_bytes());
        self
    }
    /// `mov rax, [addr]`
    pub fn load(mut self, addr: u64) -> Self {
        self.0.extend([0x48, 0xa1]);
        self.0.extend(addr.to_le_bytes());
        self
    }
    /// `mov [addr], rax`
    pub fn store_rax(mut self, addr: u64) -> Self {
        self.0.extend([0x48, 0xa3]);
        self.0.extend(addr.to_le_bytes());
        self
    }
    /// A hypercall: `mov dx, HYPERCALL_PORT; mov eax, h; out dx, eax`.
    pub fn hypercall(self, h: Hypercall) -> Self {
        self.mov_dx(HYPERCALL_PORT).mov_eax(h as u32).out()
    }
    /// `mov rcx, n; 1: dec rcx; jnz 1b` (busy work: n iterations)
    pub fn count_down(mut self, n: u64) -> Self {
        self.0.extend([0x48, 0xb9]);
        self.0.extend(n.to_le_bytes());
        self.0.extend([0x48, 0xff, 0xc9, 0x75, 0xfb]);
        self
    }
    /// `jmp $` (spin forever)
    pub fn spin(mut self) -> Self {
        self.0.extend([0xeb, 0xfe]);
        self
    }
    /// `jmp` back to offset 0.
    pub fn loop_to_start(mut self) -> Self {
        let rel = -(self.0.len() as i32 + 5);
        self.0.push(0xe9);
        self.0.extend(rel.to_le_bytes());
        self
    }
    /// `hlt` (privileged: faults at CPL3)
    pub fn hlt(mut self) -> Self {
        self.0.push(0xf4);
        self
    }
}
