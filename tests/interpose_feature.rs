//! The `interpose` feature decides whose functions the program's libc names are: with it
//! (the default) `read`, `syscall`, `clock_nanosleep`, ... are parlib-syscalls' wrappers,
//! defined in this executable; without it (`--no-default-features`) they are glibc's.
//! `test.sh` runs this test both ways.

use std::ffi::CStr;

/// The file that holds the code at `f`, as the dynamic linker reports it.
fn object_of(f: *const ()) -> String {
    // SAFETY: an all-zero Dl_info is valid; dladdr fills it.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr reads only the address; `info` is valid for writes.
    let found = unsafe { libc::dladdr(f.cast(), &mut info) };
    assert_ne!(found, 0, "dladdr found no object for {f:p}");
    assert!(!info.dli_fname.is_null(), "dladdr gave no file name for {f:p}");
    // SAFETY: dladdr returned a NUL-terminated name that lives as long as the object.
    unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned()
}

/// What the program's references to the interposed names bind to: the file of each.
fn bindings() -> Vec<(&'static str, String)> {
    vec![
        ("read", object_of(libc::read as *const ())),
        ("write", object_of(libc::write as *const ())),
        ("syscall", object_of(libc::syscall as *const ())),
        ("clock_nanosleep", object_of(libc::clock_nanosleep as *const ())),
        ("accept4", object_of(libc::accept4 as *const ())),
    ]
}

#[cfg(feature = "interpose")]
#[test]
fn with_the_feature_the_libc_names_are_defined_in_the_executable() {
    // Refers to the wrappers, so they are linked (it fails, as nothing is initialised).
    let _ = parlib::syscalls::init();
    let exe = std::env::current_exe().expect("current_exe");
    let exe = exe.file_name().expect("a file name").to_string_lossy().into_owned();
    for (name, file) in bindings() {
        assert!(
            file.ends_with(&exe),
            "`{name}` binds to {file}, not to this executable ({exe}): std's calls would block vcores"
        );
    }
}

#[cfg(not(feature = "interpose"))]
#[test]
fn without_the_feature_the_libc_names_are_glibcs() {
    let _ = parlib::syscalls::init();
    for (name, file) in bindings() {
        assert!(file.contains("libc.so"), "`{name}` binds to {file}, not to glibc, with the feature off");
    }
}
