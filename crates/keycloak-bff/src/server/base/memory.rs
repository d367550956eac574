//! Keeping the server's memory near what it uses. glibc's allocator keeps in its arenas what a
//! burst of requests freed (docs/performance.md: `/notes` under 64 connections takes the demo
//! from 31 to 45 MB, and a trim brings it back to 32). The allocator is the app's, not the
//! library's: an app that wants this calls [`release_free_memory`] itself (the demo does, once a
//! minute, while it serves). Elsewhere than glibc it does nothing.

/// Hands the memory freed since the last call back to the system (glibc's `malloc_trim`).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
