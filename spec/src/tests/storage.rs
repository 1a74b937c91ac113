//! Rules of `storage`: volumes and persisted paths.

use super::*;

fn one_device() -> SpecDocument {
    with_volumes(vec![device_volume()])
}

fn one_pool() -> SpecDocument {
    with_volumes(vec![pool_volume()])
}

fn vol(d: &mut SpecDocument) -> &mut VolumeDoc {
    &mut d.storage.volumes[0]
}

#[test]
fn storage_rules() {
    check_faults(
        one_device,
        &[
            (
                |d| vol(d).name.clear(),
                "storage.volumes[0].name",
                "required",
            ),
            (
                |d| vol(d).name = "Data".into(),
                "storage.volumes[0].name",
                "lower case",
            ),
            (
                |d| vol(d).name = "a.b".into(),
                "storage.volumes[0].name",
                "may contain only a-z, 0-9 and '-'",
            ),
            (
                |d| {
                    let mut second = pool_volume();
                    second.name = "data".into();
                    d.storage.volumes.push(second);
                },
                "storage.volumes[1].name",
                "duplicate volume name, also volumes[0]",
            ),
            (
                |d| vol(d).pool = Some("/mnt/ssd-1".into()),
                "storage.volumes[0]",
                "has both device and pool",
            ),
            (
                |d| vol(d).device = None,
                "storage.volumes[0]",
                "needs a device or a pool",
            ),
            (
                |d| vol(d).device = Some("/mnt/disk".into()),
                "storage.volumes[0].device",
                "under /dev/",
            ),
            (
                |d| vol(d).device = Some("/dev".into()),
                "storage.volumes[0].device",
                "under /dev/",
            ),
            (
                |d| vol(d).device = Some("dev/sda".into()),
                "storage.volumes[0].device",
                "must be an absolute path",
            ),
            (
                |d| vol(d).device = Some("/dev/../etc/sda".into()),
                "storage.volumes[0].device",
                "`..`",
            ),
            (
                |d| vol(d).device = Some(String::new()),
                "storage.volumes[0].device",
                "required",
            ),
            (
                |d| vol(d).size = "10GiB".into(),
                "storage.volumes[0].size",
                "only a pool volume takes a size",
            ),
            (
                |d| vol(d).filesystem = "zfs".into(),
                "storage.volumes[0].filesystem",
                "`zfs` is not one of btrfs, ext4, xfs",
            ),
            (
                |d| vol(d).mount_point.clear(),
                "storage.volumes[0].mount_point",
                "required",
            ),
            (
                |d| vol(d).mount_point = "data".into(),
                "storage.volumes[0].mount_point",
                "must be an absolute path",
            ),
            (
                |d| vol(d).mount_point = "/".into(),
                "storage.volumes[0].mount_point",
                "must not be `/`",
            ),
            (
                |d| vol(d).mount_point = "/etc".into(),
                "storage.volumes[0].mount_point",
                "system directory",
            ),
            (
                |d| vol(d).mount_point = "/proc".into(),
                "storage.volumes[0].mount_point",
                "system directory",
            ),
            (
                |d| vol(d).mount_point = "/usr".into(),
                "storage.volumes[0].mount_point",
                "system directory",
            ),
            (
                |d| vol(d).mount_point = "/mnt/a/../b".into(),
                "storage.volumes[0].mount_point",
                "`.` or `..`",
            ),
            (
                |d| vol(d).mount_point = "/mnt/a/".into(),
                "storage.volumes[0].mount_point",
                "must not end with `/`",
            ),
            (
                |d| vol(d).mount_point = "/mnt//a".into(),
                "storage.volumes[0].mount_point",
                "`//`",
            ),
            (
                |d| vol(d).mount_point = "/mnt/a\0b".into(),
                "storage.volumes[0].mount_point",
                "control characters",
            ),
            (
                |d| vol(d).mount_point = format!("/{}", "a".repeat(5000)),
                "storage.volumes[0].mount_point",
                "longer than 4096",
            ),
            (
                |d| {
                    let mut second = pool_volume();
                    second.mount_point = "/srv/data".into();
                    d.storage.volumes.push(second);
                },
                "storage.volumes[1].mount_point",
                "also the mount point of volumes[0]",
            ),
            (
                |d| vol(d).mount_options = vec!["rw,noatime".into()],
                "storage.volumes[0].mount_options[0]",
                "one option per entry",
            ),
            (
                |d| vol(d).mount_options = vec!["no atime".into()],
                "storage.volumes[0].mount_options[0]",
                "one option per entry",
            ),
            (
                |d| vol(d).mount_options = vec![String::new()],
                "storage.volumes[0].mount_options[0]",
                "empty option",
            ),
            (
                |d| vol(d).mount_options = vec!["x".into(); 65],
                "storage.volumes[0].mount_options",
                "at most 64 entries",
            ),
            (
                |d| vol(d).format = "always".into(),
                "storage.volumes[0].format",
                "`always` is not one of never, if-blank, wipe",
            ),
            (
                |d| vol(d).format = "wipe".into(),
                "storage.volumes[0].wipe_signature",
                "required with format wipe",
            ),
            (
                |d| vol(d).wipe_signature = "blank".into(),
                "storage.volumes[0].wipe_signature",
                "only allowed with format: wipe",
            ),
            (
                |d| {
                    vol(d).format = "wipe".into();
                    vol(d).wipe_signature = "ext4".into();
                },
                "storage.volumes[0].wipe_signature",
                "must be `blank` or a filesystem UUID",
            ),
            (
                |d| d.storage.volumes = vec![device_volume(); 65],
                "storage.volumes",
                "at most 64 entries",
            ),
        ],
    );
    check_faults(
        one_pool,
        &[
            (
                |d| vol(d).size.clear(),
                "storage.volumes[0].size",
                "required for a pool volume",
            ),
            (
                |d| vol(d).size = "0".into(),
                "storage.volumes[0].size",
                "more than zero",
            ),
            (
                |d| vol(d).size = "50 GiB".into(),
                "storage.volumes[0].size",
                "not a size",
            ),
            (
                |d| vol(d).size = "lots".into(),
                "storage.volumes[0].size",
                "not a size",
            ),
            (
                |d| vol(d).size = "99999999999999999999".into(),
                "storage.volumes[0].size",
                "too large",
            ),
            (
                |d| vol(d).size = "20000000TiB".into(),
                "storage.volumes[0].size",
                "too large",
            ),
            (
                |d| vol(d).filesystem = "ext4".into(),
                "storage.volumes[0].filesystem",
                "btrfs subvolume",
            ),
            (
                |d| {
                    vol(d).format = "wipe".into();
                    vol(d).wipe_signature = "blank".into();
                },
                "storage.volumes[0].format",
                "never formatted",
            ),
            (
                |d| vol(d).pool = Some("mnt/ssd".into()),
                "storage.volumes[0].pool",
                "must be an absolute path",
            ),
        ],
    );
    check_valid(
        one_device,
        &[
            |d| vol(d).filesystem = "ext4".into(),
            |d| vol(d).filesystem = "xfs".into(),
            |d| vol(d).device = Some("/dev/sdb".into()),
            |d| vol(d).format = "never".into(),
            |d| {
                vol(d).format = "wipe".into();
                vol(d).wipe_signature = "blank".into();
            },
            |d| {
                vol(d).format = "wipe".into();
                vol(d).wipe_signature = "E46B2AFF-9551-4548-B363-96D2AC90BB41".into();
            },
            |d| vol(d).mount_options = vec!["noatime".into(), "compress=zstd:3".into()],
            |d| vol(d).mount_point = "/etc/rancher".into(),
            |d| d.storage.volumes.push(pool_volume()),
        ],
    );
    check_valid(
        one_pool,
        &[
            |d| vol(d).filesystem = "btrfs".into(),
            |d| vol(d).size = "10G".into(),
            |d| vol(d).size = "1073741824".into(),
            |d| vol(d).format = "never".into(),
        ],
    );
}

#[test]
fn kernel_filesystems_are_checked_for_devices() {
    let zos = ValidationContext {
        own_public_key: None,
        kernel_filesystems: Some(BTreeSet::from(["btrfs".to_owned(), "vfat".to_owned()])),
        ..ValidationContext::default()
    };
    let mut doc = with_volumes(vec![device_volume(), pool_volume()]);
    assert!(errors_with(&doc, &zos).is_empty());
    doc.storage.volumes[0].filesystem = "ext4".into();
    let errors = errors_with(&doc, &zos);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "storage.volumes[0].filesystem: the kernel does not support ext4 (it has: btrfs, vfat)"
    );
    assert!(doc.validate(&ValidationContext::default()).is_ok());
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn persist_defaults_cover_what_no_volume_does() {
    let spec = valid(&with_volumes(vec![pool_volume(), device_volume()]));
    let persist = spec.storage.persist.unwrap();
    assert_eq!(
        persist.volume.to_string(),
        "k3s",
        "the first volume holds them"
    );
    let paths: Vec<(String, Propagation)> = persist
        .paths
        .iter()
        .map(|p| (p.path.to_string(), p.propagation))
        .collect();
    // /var/lib/rancher/k3s (and the local-path dir inside it) is a volume.
    assert_eq!(
        paths,
        [
            ("/etc/rancher".to_owned(), Propagation::Private),
            ("/var/lib/kubelet".to_owned(), Propagation::Rshared),
            ("/var/lib/longhorn".to_owned(), Propagation::Rshared),
            (
                "/var/lib/tfagent-containerd".to_owned(),
                Propagation::Private
            ),
        ]
    );
    // The agent's own state dir is never bind-mounted, by default or when
    // asked.
    let ctx = ValidationContext {
        state_dir: Some("/srv/tfagent".parse().unwrap()),
        ..ValidationContext::default()
    };
    let spec = with_volumes(vec![pool_volume()]).validate(&ctx).unwrap();
    let persist = spec.storage.persist.clone().unwrap();
    assert!(
        persist
            .paths
            .iter()
            .all(|p| p.path.as_str() != "/srv/tfagent")
    );
    let mut asked = spec.to_document();
    asked
        .storage
        .persist
        .paths
        .push(asked.storage.persist.paths[0].clone());
    asked.storage.persist.paths.last_mut().unwrap().path = "/srv".into();
    let refused = errors_with(&asked, &ctx);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]
            .message
            .contains("agent's own state dir /srv/tfagent"),
        "{refused:?}"
    );
    // Round trip: the explicit defaults validate to the same spec.
    assert_eq!(
        spec.to_document().validate(&ctx).unwrap().storage,
        spec.storage
    );
    // No volumes: nothing to persist on.
    assert!(valid(&base()).storage.persist.is_none());
}

#[test]
fn invalid_volume_and_persist_specs_name_their_fields() {
    let mut relative = device_volume();
    relative.mount_point = "var/lib/data".into();
    let mut dotdot = pool_volume();
    dotdot.mount_point = "/var/lib/../etc".into();
    let mut unknown_fs = device_volume();
    unknown_fs.name = "other".into();
    unknown_fs.device = Some("/dev/sdc".into());
    unknown_fs.filesystem = "zfs".into();
    unknown_fs.mount_point = "/srv/other".into();
    let found = errors_of(&with_volumes(vec![relative, dotdot, unknown_fs]));
    assert_eq!(
        fields(&found),
        [
            "storage.volumes[0].mount_point",
            "storage.volumes[1].mount_point",
            "storage.volumes[2].filesystem"
        ],
        "{found:#?}"
    );

    // Duplicates and nesting over a pool.
    let mut twin = device_volume();
    twin.name = "twin".into();
    twin.device = Some("/dev/sdd".into());
    let mut in_pool = device_volume();
    in_pool.name = "inpool".into();
    in_pool.device = Some("/dev/sde".into());
    in_pool.mount_point = "/mnt/ssd-1/x".into();
    let mut same_device = device_volume();
    same_device.name = "again".into();
    same_device.mount_point = "/srv/again".into();
    let found = errors_of(&with_volumes(vec![
        pool_volume(),
        device_volume(),
        twin,
        in_pool,
        same_device,
    ]));
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        shown.contains(
            &"storage.volumes[2].mount_point: also the mount point of volumes[1]".to_owned()
        ),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.volumes[3].mount_point: lies in pool /mnt/ssd-1")),
        "{shown:#?}"
    );
    assert!(
        shown.contains(&"storage.volumes[4].device: also the device of volumes[1]".to_owned()),
        "{shown:#?}"
    );

    // Persisted paths: nested, inside a volume, hiding the holder, unknown volume.
    let mut doc = with_volumes(vec![pool_volume()]);
    doc.storage.persist.volume = "nope".into();
    assert_eq!(fields(&errors_of(&doc)), ["storage.persist.volume"]);
    let mut doc = with_volumes(vec![pool_volume()]);
    doc.storage.persist.paths = [
        "/etc/rancher",
        "/etc/rancher/node",
        "/var/lib/rancher/k3s/x",
        "/var/lib/rancher",
        "relative",
    ]
    .iter()
    .map(|p| PersistPathDoc {
        path: (*p).into(),
        propagation: String::new(),
    })
    .collect();
    doc.storage.persist.paths.push(PersistPathDoc {
        path: "/srv/p".into(),
        propagation: "slave".into(),
    });
    let shown: Vec<String> = errors_of(&doc).iter().map(ToString::to_string).collect();
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[2].path: already on volume k3s")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[3].path: would hide volume k3s")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[4].path: must be an absolute path")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[5].propagation")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[1].path: lies inside paths[0]")),
        "{shown:#?}"
    );
    // Paths without any volume to keep them on.
    let mut doc = base();
    doc.storage.persist.paths = vec![PersistPathDoc {
        path: "/etc/rancher".into(),
        propagation: String::new(),
    }];
    assert_eq!(fields(&errors_of(&doc)), ["storage.persist"]);

    // A pool volume takes per-mount flags only.
    let mut flagged = pool_volume();
    flagged.mount_options = vec!["noatime".into(), "compress=zstd".into()];
    assert_eq!(
        fields(&errors_of(&with_volumes(vec![flagged]))),
        ["storage.volumes[0].mount_options[1]"]
    );
}

fn errors_of(doc: &SpecDocument) -> Vec<FieldError> {
    errors(doc)
}

#[test]
fn devices_the_host_refuses_are_invalid_arguments_naming_the_field() {
    let ctx = ValidationContext {
        refused_devices: [(
            "/dev/disk/by-id/nvme-disk-1".to_owned(),
            "/dev/disk/by-id/nvme-disk-1 is not in the boot config's allowed_devices (/dev/loop*)"
                .to_owned(),
        )]
        .into_iter()
        .collect(),
        ..ValidationContext::default()
    };
    let errors = errors_with(&with_volumes(vec![device_volume()]), &ctx);
    assert_eq!(fields(&errors), ["storage.volumes[0].device"]);
    assert!(errors[0].message.contains("allowed_devices"));
}

/// Issue 18: mount points and persisted paths are refused in a system tree
/// (outside the allow-list), on the agent's own state or run dir, their
/// ancestors and insides, and through a symlink the host reported; each
/// fault names its field.
#[test]
fn mount_targets_are_checked_as_host_paths() {
    let ctx = ValidationContext {
        state_dir: Some("/srv/tfagent/state".parse().unwrap()),
        run_dir: Some("/opt/tfagent/run".parse().unwrap()),
        symlinked_paths: [("/srv/linked/data".to_owned(), "/srv/linked".to_owned())].into(),
        ..ValidationContext::default()
    };
    let volume_at = |mount_point: &str| {
        let mut volume = device_volume();
        volume.mount_point = mount_point.into();
        with_volumes(vec![volume])
    };
    let persisted = |path: &str| {
        let mut doc = with_volumes(vec![device_volume()]);
        doc.storage.persist.paths = vec![PersistPathDoc {
            path: path.into(),
            ..Default::default()
        }];
        doc
    };
    let cases: &[(&str, &str)] = &[
        ("/sys/fs/cgroup", "lies under /sys, a system directory"),
        ("/etc/ssh", "lies under /etc, a system directory"),
        ("/usr/lib", "lies under /usr, a system directory"),
        ("/run", "must not be /run, a system directory"),
        ("/var", "must not be /var, a system directory"),
        ("/var/lib", "lies under /var"),
        ("/root", "must not be /root"),
        ("/dev/shm/x", "lies under /dev"),
        ("/var/lib/rancher2", "lies under /var"),
        (
            "/srv/tfagent/state",
            "would hide the agent's own state dir /srv/tfagent/state",
        ),
        ("/srv/tfagent", "would hide the agent's own state dir"),
        (
            "/srv/tfagent/state/x",
            "lies inside the agent's own state dir",
        ),
        (
            "/opt/tfagent/run",
            "would hide the agent's run dir /opt/tfagent/run",
        ),
        ("/opt/tfagent", "would hide the agent's run dir"),
        ("/opt/tfagent/run/sock", "lies inside the agent's run dir"),
        ("/", "must not be `/`"),
        ("/tmp", "must not be /tmp itself"),
        ("/srv/linked/data", "/srv/linked is a symlink"),
    ];
    for (path, needle) in cases {
        for (doc, field) in [
            (volume_at(path), "storage.volumes[0].mount_point"),
            (persisted(path), "storage.persist.paths[0].path"),
        ] {
            let found = errors_with(&doc, &ctx);
            assert!(
                found
                    .iter()
                    .any(|e| e.path == field && e.message.contains(needle)),
                "{path} as {field}: want `{needle}`, got {found:#?}"
            );
        }
    }
    // The allow-list, the services' dirs the boot config names, and
    // ordinary places stay valid.
    let ctx = ValidationContext {
        service_dirs: Some(ServiceDirs {
            k3s_data_dir: "/var/lib/k3s-here".parse().unwrap(),
            ..ServiceDirs::default()
        }),
        ..ctx
    };
    for path in [
        "/var/lib/rancher/k3s",
        "/var/lib/kubelet",
        "/var/lib/tfagent-containerd",
        "/var/lib/longhorn",
        "/etc/rancher",
        "/var/log/pods",
        "/var/lib/k3s-here",
        "/srv/other",
        "/mnt/ssd-1/data",
        "/tmp/x",
    ] {
        assert_eq!(errors_with(&volume_at(path), &ctx), vec![], "{path}");
    }
    // Without host facts the defaults stand in: /run/tfagent and
    // /var/cache/modules/tfagent.
    let found = errors_with(
        &volume_at("/var/cache/modules"),
        &ValidationContext::default(),
    );
    assert!(
        found[0]
            .message
            .contains("state dir /var/cache/modules/tfagent"),
        "{found:?}"
    );
}
