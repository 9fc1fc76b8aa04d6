//! Loads the static guest ELF: every PT_LOAD segment must fall inside the guest
//! program's region of the layout; bss is zeroed.
use crate::error::VmError;
use crate::memory::GuestAddress;
use crate::memory::GuestRam;
use goblin::elf::{program_header::PT_LOAD, Elf};
use thaw_abi::layout;

/// Copies the program into guest RAM and returns its entry point.
pub fn load(ram: &GuestRam, image: &[u8]) -> Result<u64, VmError> {
    let elf = Elf::parse(image).map_err(|e| VmError::BadElf(e.to_string()))?;
    if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(VmError::BadElf("not an x86_64 ELF64".into()));
    }
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
        let end = ph
            .p_vaddr
            .checked_add(ph.p_memsz)
            .ok_or_else(|| VmError::BadElf("segment wraps".into()))?;
        if ph.p_vaddr < layout::ELF_BASE || end > layout::ELF_END || ph.p_filesz > ph.p_memsz {
            return Err(VmError::BadElf(format!(
                "segment {:#x}+{:#x} outside the program region",
                ph.p_vaddr, ph.p_memsz
            )));
        }
        let file = image
            .get(ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize)
            .ok_or_else(|| VmError::BadElf("segment data past end of file".into()))?;
        ram.write(GuestAddress(ph.p_vaddr), file)?;
        ram.zero(
            GuestAddress(ph.p_vaddr + ph.p_filesz),
            ph.p_memsz - ph.p_filesz,
        )?;
    }
    if !(layout::ELF_BASE..layout::ELF_END).contains(&elf.entry) {
        return Err(VmError::BadElf(format!(
            "entry {:#x} outside the program region",
            elf.entry
        )));
    }
    Ok(elf.entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Backing;

    #[test]
    fn test_garbage_is_refused() {
        let ram = GuestRam::new(32 << 20, Backing::Anonymous).unwrap();
        assert!(matches!(
            load(&ram, b"not an elf at all"),
            Err(VmError::BadElf(_))
        ));
        assert!(matches!(load(&ram, &[]), Err(VmError::BadElf(_))));
    }
}
