//! WASI preview 1 errno values (`wasi_snapshot_preview1`'s `errno` enum), the
//! ones the guest returns, and the mapping of `/tmp` errors onto them.
use thaw_guestfs::TmpError;

pub const SUCCESS: i32 = 0;
pub const ACCES: i32 = 2;
pub const ADDRNOTAVAIL: i32 = 4;
pub const AFNOSUPPORT: i32 = 5;
pub const AGAIN: i32 = 6;
pub const ALREADY: i32 = 7;
pub const BADF: i32 = 8;
pub const CONNABORTED: i32 = 13;
pub const CONNREFUSED: i32 = 14;
pub const CONNRESET: i32 = 15;
pub const XDEV: i32 = 18;
pub const DQUOT: i32 = 19;
pub const EXIST: i32 = 20;
pub const FAULT: i32 = 21;
pub const HOSTUNREACH: i32 = 23;
pub const INPROGRESS: i32 = 26;
pub const INTR: i32 = 27;
pub const INVAL: i32 = 28;
pub const IO: i32 = 29;
pub const ISCONN: i32 = 30;
pub const ISDIR: i32 = 31;
pub const MFILE: i32 = 33;
pub const MSGSIZE: i32 = 35;
pub const NAMETOOLONG: i32 = 37;
pub const NETUNREACH: i32 = 40;
pub const NOBUFS: i32 = 42;
pub const NOENT: i32 = 44;
pub const NOMEM: i32 = 48;
pub const NOSPC: i32 = 51;
pub const NOSYS: i32 = 52;
pub const NOTCONN: i32 = 53;
pub const NOTDIR: i32 = 54;
pub const NOTEMPTY: i32 = 55;
pub const NOTSUP: i32 = 58;
pub const PERM: i32 = 63;
pub const PIPE: i32 = 64;
pub const PROTO: i32 = 65;
pub const PROTOTYPE: i32 = 67;
pub const ROFS: i32 = 69;
pub const SPIPE: i32 = 70;
pub const TIMEDOUT: i32 = 73;

/// The errno a failed `/tmp` operation returns.
pub fn from_tmp(e: TmpError) -> i32 {
    match e {
        TmpError::NotFound => NOENT,
        TmpError::Exists => EXIST,
        TmpError::NotDir => NOTDIR,
        TmpError::IsDir => ISDIR,
        TmpError::NotEmpty => NOTEMPTY,
        TmpError::Invalid => INVAL,
    }
}

/// The errno of a call's result (`SUCCESS` for `Ok`).
pub fn code(r: Result<(), i32>) -> i32 {
    match r {
        Ok(()) => SUCCESS,
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_tmp_errors_map_to_distinct_errnos() {
        let all = [
            TmpError::NotFound,
            TmpError::Exists,
            TmpError::NotDir,
            TmpError::IsDir,
            TmpError::NotEmpty,
            TmpError::Invalid,
        ];
        let codes = all.map(from_tmp);
        assert_eq!(codes, [NOENT, EXIST, NOTDIR, ISDIR, NOTEMPTY, INVAL]);
        for (i, a) in codes.iter().enumerate() {
            assert!(codes[i + 1..].iter().all(|b| b != a));
        }
    }

    #[test]
    fn test_code_is_success_or_the_error() {
        assert_eq!(code(Ok(())), SUCCESS);
        assert_eq!(code(Err(BADF)), BADF);
    }
}
