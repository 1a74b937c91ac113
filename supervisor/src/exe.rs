//! Which executables the supervisor runs as root: a binary owned by root,
//! writable by no one else, reached only through directories (every one
//! from `/`, and every one a symlink leads through) owned by root and
//! writable by no one else. One exception: a root-owned directory with the
//! sticky bit may be writable by others when what the walk takes from it
//! is root's — the kernel lets no one else rename or remove a root-owned
//! entry there, so a tmpfs mounted without a mode (1777) on the path does
//! not lock the node out. A name that does not exist yet in such a directory, or a
//! symlink there that is not root's, is refused: anyone could make it.
//!
//! The walk opens each component with `O_PATH | O_NOFOLLOW` relative to the
//! directory checked before it and checks the open descriptor, so what is
//! checked is what is run: [`open_trusted`] returns the binary's descriptor
//! and the supervisor executes that very file (`/proc/self/fd/N`), never
//! the path again.

use std::{
    ffi::OsStr,
    fmt, io,
    os::{
        fd::{AsFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{AT_FDCWD, OFlag, openat, readlinkat},
    sys::stat::{FileStat, Mode, SFlag, fstat},
};

/// Symlinks followed at most, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// Why a binary is not run.
#[derive(Debug)]
pub enum Untrusted {
    /// Some component does not exist (yet); every directory before it is
    /// trusted.
    Missing(PathBuf),
    /// A component is not root's or others may write to it.
    Refused(String),
    /// The walk failed otherwise.
    Io(PathBuf, io::Error),
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Missing(path) => write!(f, "{} does not exist", path.display()),
            Untrusted::Refused(why) => f.write_str(why),
            Untrusted::Io(path, error) => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl From<Untrusted> for io::Error {
    fn from(error: Untrusted) -> Self {
        let kind = match error {
            Untrusted::Missing(_) => io::ErrorKind::NotFound,
            Untrusted::Refused(_) => io::ErrorKind::PermissionDenied,
            Untrusted::Io(_, ref e) => e.kind(),
        };
        io::Error::new(kind, error.to_string())
    }
}

/// Why a component with this status may not be on a root binary's path,
/// `None` when it may.
fn refusal(path: &Path, stat: &FileStat) -> Option<String> {
    let mode = stat.st_mode & 0o7777;
    if stat.st_uid != 0 {
        return Some(format!(
            "{} is owned by uid {}, not root",
            path.display(),
            stat.st_uid
        ));
    }
    if mode & 0o022 != 0 && !shared_sticky(stat) {
        return Some(format!(
            "{} is writable by {} (mode {mode:04o})",
            path.display(),
            if mode & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
        ));
    }
    None
}

/// A root-owned sticky directory others may write to (`/tmp`, a tmpfs
/// root): trusted for the root-owned entries taken from it.
fn shared_sticky(stat: &FileStat) -> bool {
    let mode = stat.st_mode & 0o7777;
    kind(stat) == SFlag::S_IFDIR && stat.st_uid == 0 && mode & 0o1000 != 0 && mode & 0o022 != 0
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// Opens the executable at `path` (absolute) for running as root, checking
/// it and every directory on the way (see the module). The descriptor is
/// `O_PATH | O_CLOEXEC`.
pub fn open_trusted(path: &Path) -> Result<OwnedFd, Untrusted> {
    if !path.is_absolute() {
        return Err(Untrusted::Refused(format!(
            "{}: a service's binary must be an absolute path",
            path.display()
        )));
    }
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let open = |dir: &dyn AsFd, name: &OsStr, shown: &Path| {
        openat(dir.as_fd(), name, flags, Mode::empty()).map_err(|errno| match errno {
            Errno::ENOENT => Untrusted::Missing(shown.to_owned()),
            errno => Untrusted::Io(shown.to_owned(), errno.into()),
        })
    };
    let stat = |fd: &OwnedFd, shown: &Path| {
        fstat(fd).map_err(|errno| Untrusted::Io(shown.to_owned(), errno.into()))
    };
    let root_path = Path::new("/");
    let root = openat(AT_FDCWD, root_path, flags, Mode::empty())
        .map_err(|errno| Untrusted::Io(root_path.to_owned(), errno.into()))?;
    let root_stat = stat(&root, root_path)?;
    if let Some(why) = refusal(root_path, &root_stat) {
        return Err(Untrusted::Refused(why));
    }

    // What is left to walk, last component first; `dir` is the checked
    // directory it is relative to, `shown` how the walk names it.
    let mut pending: Vec<PathBuf> = components_reversed(path);
    let mut dir = root
        .try_clone()
        .map_err(|e| Untrusted::Io(root_path.to_owned(), e))?;
    let mut shown = PathBuf::from("/");
    // Whether `dir` is a shared sticky directory (see the module).
    let mut dir_shared = shared_sticky(&root_stat);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == Path::new("/") {
            dir = root
                .try_clone()
                .map_err(|e| Untrusted::Io(root_path.to_owned(), e))?;
            shown = PathBuf::from("/");
            dir_shared = shared_sticky(&root_stat);
            continue;
        }
        let next_shown = if name == Path::new("..") {
            shown
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_owned)
        } else {
            shown.join(&name)
        };
        let fd = match open(&dir, name.as_os_str(), &next_shown) {
            Err(Untrusted::Missing(missing)) if dir_shared => {
                return Err(Untrusted::Refused(format!(
                    "{} does not exist, and anyone may create it in {} (mode 1777)",
                    missing.display(),
                    shown.display()
                )));
            }
            opened => opened?,
        };
        let st = stat(&fd, &next_shown)?;
        match kind(&st) {
            SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Untrusted::Io(next_shown, Errno::ELOOP.into()));
                }
                // The link lives in `dir`, already checked: only root could
                // have made it there, unless `dir` is shared — then it must
                // be root's. Its target is walked (and checked) in turn.
                if dir_shared && st.st_uid != 0 {
                    return Err(Untrusted::Refused(format!(
                        "{} is owned by uid {}, not root",
                        next_shown.display(),
                        st.st_uid
                    )));
                }
                let target = readlinkat(dir.as_fd(), name.as_os_str())
                    .map_err(|errno| Untrusted::Io(next_shown.clone(), errno.into()))?;
                pending.extend(components_reversed(Path::new(&target)));
            }
            SFlag::S_IFDIR => {
                if let Some(why) = refusal(&next_shown, &st) {
                    return Err(Untrusted::Refused(why));
                }
                dir_shared = shared_sticky(&st);
                dir = fd;
                shown = next_shown;
            }
            SFlag::S_IFREG if pending.is_empty() => {
                if let Some(why) = refusal(&next_shown, &st) {
                    return Err(Untrusted::Refused(why));
                }
                return Ok(fd);
            }
            _ if pending.is_empty() => {
                return Err(Untrusted::Refused(format!(
                    "{} is not a regular file",
                    next_shown.display()
                )));
            }
            _ => return Err(Untrusted::Io(next_shown, Errno::ENOTDIR.into())),
        }
    }
    Err(Untrusted::Refused(format!(
        "{} is a directory, not a binary",
        path.display()
    )))
}

/// `path`'s components to walk, last first: `/` (restart at the root),
/// `..` and names; `.` dropped.
fn components_reversed(path: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = path
        .components()
        .filter_map(|c| match c {
            Component::RootDir => Some(PathBuf::from("/")),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::Normal(name) => Some(PathBuf::from(OsStr::from_bytes(name.as_bytes()))),
            Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

/// Whether the supervisor would run the binary at `path` as root: `Ok` when
/// it would, or when it does not exist yet but every directory before the
/// missing part is trusted (it is checked again when it is started).
pub fn check_binary(path: &Path) -> Result<(), String> {
    match open_trusted(path) {
        Ok(_) | Err(Untrusted::Missing(_)) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::{
        fs,
        os::unix::fs::{PermissionsExt, symlink},
    };

    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A root-owned 0700 directory that is not under a world-writable one.
    fn trusted_dir() -> tempfile::TempDir {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/exe-tests");
        fs::create_dir_all(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        tempfile::tempdir_in(base).unwrap()
    }

    fn binary(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_system_binaries_are_trusted_through_symlinks() {
        // /bin is a symlink to usr/bin on merged-/usr systems.
        open_trusted(Path::new("/bin/sh")).unwrap();
        check_binary(Path::new("/usr/bin/../bin/./sh")).unwrap();
    }

    #[test]
    fn a_relative_path_or_a_directory_is_refused() {
        assert!(
            check_binary(Path::new("bin/sh"))
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            check_binary(Path::new("/usr/bin"))
                .unwrap_err()
                .contains("directory")
        );
    }

    #[test]
    fn a_sticky_directory_passes_only_what_is_roots_in_it() {
        if !is_root() {
            return;
        }
        // /tmp (1777) stands for zOS's tmpfs root: root's own 0700 temp
        // dir in it, and a root-owned 0755 binary there, are trusted.
        let dir = tempfile::tempdir().unwrap();
        let path = binary(dir.path(), "k3s", 0o755);
        check_binary(&path).unwrap();
        // A name that does not exist yet there: anyone could make it.
        let error = check_binary(Path::new("/tmp/not-yet/k3s")).unwrap_err();
        assert!(error.contains("anyone may create it in /tmp"), "{error}");
        // Someone else's entry in it is refused, a directory or a link.
        let theirs = binary(dir.path(), "theirs", 0o755);
        let dir_of_theirs = tempfile::tempdir().unwrap();
        nix::unistd::chown(
            dir_of_theirs.path(),
            Some(nix::unistd::Uid::from_raw(1000)),
            None,
        )
        .unwrap();
        fs::set_permissions(dir_of_theirs.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let inside = binary(dir_of_theirs.path(), "k3s", 0o755);
        let error = check_binary(&inside).unwrap_err();
        assert!(error.contains("owned by uid 1000, not root"), "{error}");
        let link = Path::new("/tmp").join(format!("tfagent-exe-test-{}", std::process::id()));
        let _ = fs::remove_file(&link);
        symlink(&theirs, &link).unwrap();
        nix::unistd::fchownat(
            AT_FDCWD,
            &link,
            Some(nix::unistd::Uid::from_raw(1000)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let error = check_binary(&link).unwrap_err();
        let _ = fs::remove_file(&link);
        assert!(error.contains("owned by uid 1000, not root"), "{error}");
        // A world-writable directory without the sticky bit stays refused.
        let open_dir = dir.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        let in_open = binary(&open_dir, "k3s", 0o755);
        fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let error = check_binary(&in_open).unwrap_err();
        assert!(error.contains("open is writable by others"), "{error}");
    }

    #[test]
    fn the_binary_and_its_directories_must_be_roots_alone() {
        if !is_root() {
            return;
        }
        let dir = trusted_dir();
        let good = binary(dir.path(), "good", 0o755);
        check_binary(&good).unwrap();
        // Missing, in a trusted directory: accepted until it is started.
        check_binary(&dir.path().join("later")).unwrap();
        assert!(matches!(
            open_trusted(&dir.path().join("later")),
            Err(Untrusted::Missing(_))
        ));

        let writable = binary(dir.path(), "writable", 0o775);
        let error = check_binary(&writable).unwrap_err();
        assert!(
            error.contains("writable by its group (mode 0775)"),
            "{error}"
        );

        let not_roots = binary(dir.path(), "not-roots", 0o755);
        nix::unistd::chown(&not_roots, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
        let error = check_binary(&not_roots).unwrap_err();
        assert!(error.contains("owned by uid 1000, not root"), "{error}");

        let open_dir = dir.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        let inside = binary(&open_dir, "k3s", 0o755);
        fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let error = check_binary(&inside).unwrap_err();
        assert!(error.contains("open is writable by others"), "{error}");

        // A link in a trusted directory to a binary in an untrusted one:
        // the target's directories are checked too.
        let link = dir.path().join("link");
        symlink(&inside, &link).unwrap();
        let error = check_binary(&link).unwrap_err();
        assert!(error.contains("open is writable by others"), "{error}");
        let good_link = dir.path().join("good-link");
        symlink("good", &good_link).unwrap();
        check_binary(&good_link).unwrap();
    }
}
