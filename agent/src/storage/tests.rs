//! The storage step end to end over the recording fake: observe, plan,
//! apply, and what a second pass does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::{
    fake::{FakeMount, FakeOps},
    ports::{PathKind, Signature},
    *,
};
use crate::step::{Step, StepOutcome};
use tfagent_spec::{StorageDoc, ValidationContext, fixtures::example_document};

const STATE: &str = "/state";

fn spec(storage_yaml: &str) -> NodeSpec {
    let mut document = example_document("server-init");
    document.storage = serde_yaml_ng::from_str::<StorageDoc>(storage_yaml).unwrap();
    document
        .validate(&ValidationContext {
            state_dir: Some(STATE.parse().unwrap()),
            ..ValidationContext::default()
        })
        .unwrap()
}

struct Harness {
    ops: Arc<FakeOps>,
    storage: Storage,
    _dir: tempfile::TempDir,
}

fn harness(allowed: Option<Vec<String>>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(FakeOps::default());
    let storage = Storage::new(
        Arc::clone(&ops) as Arc<dyn StorageOps>,
        dir.path(),
        DevicePolicy::new(allowed, dir.path()),
    );
    Harness {
        ops,
        storage,
        _dir: dir,
    }
}

fn ext4_with_data() -> Vec<Signature> {
    vec![Signature {
        kind: "ext4".into(),
        usage: "filesystem".into(),
        uuid: Some("e46b2aff-9551-4548-b363-96d2ac90bb41".into()),
    }]
}

const FULL: &str = "
volumes:
  - name: k3s
    pool: /mnt/pool
    size: 1GiB
    mount_point: /var/lib/rancher/k3s
  - name: data
    device: /dev/disk/by-id/blank
    mount_point: /srv/data
    mount_options: [noatime]
persist:
  paths:
    - path: /etc/rancher
    - path: /var/lib/kubelet
";

#[tokio::test]
async fn a_blank_device_and_a_pool_converge_then_nothing_changes() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", false);
    h.ops
        .add_device("/dev/disk/by-id/blank", "/dev/sdy", "8:16", vec![]);
    let spec = spec(FULL);

    let outcome = h.storage.converge(&spec).await.unwrap();
    assert!(
        matches!(outcome, StepOutcome::Applied { .. }),
        "{outcome:?}"
    );
    let mutations = h.ops.mutations();
    let expected_order = [
        "enable_quota /mnt/pool",
        "create_subvolume /mnt/pool/tfagent-k3s",
        "set_quota /mnt/pool/tfagent-k3s 1073741824",
        "format /dev/sdy btrfs data",
    ];
    for (i, call) in expected_order.iter().enumerate() {
        assert_eq!(&mutations[i], call, "{mutations:#?}");
    }
    {
        let state = h.ops.state();
        let at = |target: &str| {
            state
                .mounts
                .iter()
                .rev()
                .find(|m| m.target == target)
                .cloned()
        };
        let k3s = at("/var/lib/rancher/k3s").unwrap();
        assert_eq!(
            (k3s.source.as_str(), k3s.root.as_str()),
            ("/dev/sdz", "/tfagent-k3s")
        );
        let data = at("/srv/data").unwrap();
        assert_eq!(
            (data.source.as_str(), data.fs_type.as_str()),
            ("/dev/sdy", "btrfs")
        );
        let rancher = at("/etc/rancher").unwrap();
        assert_eq!(rancher.root, "/tfagent-k3s/.tfagent-persist/etc/rancher");
        assert!(!rancher.shared);
        let kubelet = at("/var/lib/kubelet").unwrap();
        assert!(kubelet.shared, "the kubelet dir is rshared");
    }

    // Records: the mounts, and the filesystem tfagent made.
    let records = Records::load(h.storage.state_dir()).unwrap();
    assert_eq!(records.mounts.len(), 4);
    assert!(records.formatted("data").is_some());

    // An unchanged spec: no change at all, mutating or not.
    h.ops.clear_calls();
    let again = h.storage.converge(&spec).await.unwrap();
    assert_eq!(again, StepOutcome::UpToDate);
    assert!(h.ops.mutations().is_empty(), "{:?}", h.ops.mutations());
    // A mounted device is not probed again.
    assert!(
        !h.ops
            .state()
            .calls
            .iter()
            .any(|c| c.starts_with("signatures")),
        "{:?}",
        h.ops.state().calls
    );

    // Status: mounted, with the quota and the UUID.
    let statuses = h.storage.volume_status(&spec).await.unwrap();
    assert_eq!(statuses[0].state, VolumeState::Mounted);
    assert_eq!(statuses[0].quota_bytes, Some(1 << 30));
    assert_eq!(statuses[0].size_bytes, 1 << 30);
    assert_eq!(
        statuses[0].uuid, None,
        "the fake pool device has no signature"
    );
    assert_eq!(statuses[1].state, VolumeState::Mounted);
    assert_eq!(
        statuses[1].uuid,
        records.formatted("data").map(str::to_owned)
    );
    assert_eq!(statuses[1].size_bytes, 1000);
}

#[tokio::test]
async fn if_blank_refuses_a_device_with_data_and_changes_nothing() {
    for signatures in [
        ext4_with_data(),
        vec![Signature {
            kind: "dos".into(),
            usage: "partition table".into(),
            uuid: Some("6b8a1a2e".into()),
        }],
    ] {
        let h = harness(None);
        h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
        h.ops.add_device(
            "/dev/disk/by-id/blank",
            "/dev/sdy",
            "8:16",
            signatures.clone(),
        );
        let spec = spec(FULL);
        let error = h.storage.converge(&spec).await.unwrap_err().to_string();
        assert!(
            error.starts_with("volume data: /dev/disk/by-id/blank holds"),
            "{error}"
        );
        assert!(error.contains(&signatures[0].to_string()), "{error}");
        assert!(h.ops.mutations().is_empty(), "{:?}", h.ops.mutations());
        let statuses = h.storage.volume_status(&spec).await.unwrap();
        assert_eq!(statuses[1].state, VolumeState::Refused);
        assert!(statuses[1].last_error.as_ref().unwrap().contains("holds"));
    }
}

#[tokio::test]
async fn wipe_needs_the_exact_signature_and_then_mounts_its_own_filesystem() {
    let wipe = |uuid: &str| {
        format!(
            "volumes:\n  - name: data\n    device: /dev/disk/by-id/blank\n    format: wipe\n    wipe_signature: {uuid}\n    mount_point: /srv/data\n"
        )
    };
    let h = harness(None);
    h.ops.add_device(
        "/dev/disk/by-id/blank",
        "/dev/sdy",
        "8:16",
        ext4_with_data(),
    );
    let wrong = spec(&wipe("11111111-2222-3333-4444-555555555555"));
    let error = h.storage.converge(&wrong).await.unwrap_err().to_string();
    assert!(
        error.contains("not 11111111-2222-3333-4444-555555555555"),
        "{error}"
    );
    assert!(h.ops.mutations().is_empty());

    let right = spec(&wipe("e46b2aff-9551-4548-b363-96d2ac90bb41"));
    h.storage.converge(&right).await.unwrap();
    let mutations = h.ops.mutations();
    assert!(mutations[0].starts_with("wipe /dev/sdy"), "{mutations:?}");
    assert!(
        mutations[1].starts_with("format /dev/sdy btrfs"),
        "{mutations:?}"
    );

    // The same spec again: the new filesystem is tfagent's own, mounted as is.
    h.ops.clear_calls();
    assert_eq!(
        h.storage.converge(&right).await.unwrap(),
        StepOutcome::UpToDate
    );
    h.ops.unmount(Path::new("/srv/data")).unwrap();
    h.ops.clear_calls();
    h.storage.converge(&right).await.unwrap();
    let mutations = h.ops.mutations();
    assert!(
        mutations
            .iter()
            .all(|c| !c.starts_with("wipe") && !c.starts_with("format")),
        "{mutations:?}"
    );
}

#[tokio::test]
async fn a_device_that_changed_after_the_plan_is_not_formatted() {
    let h = harness(None);
    h.ops
        .add_device("/dev/disk/by-id/blank", "/dev/sdy", "8:16", vec![]);
    let spec = spec(
        "volumes:\n  - name: data\n    device: /dev/disk/by-id/blank\n    mount_point: /srv/data\n",
    );
    let plan = Capability::observe(&h.storage, &spec).await.unwrap();
    let changes = <Storage as Capability>::plan(&spec, &plan);
    // Someone puts a filesystem on it in between.
    h.ops
        .state()
        .signatures
        .insert("/dev/sdy".into(), ext4_with_data());
    let error = Capability::apply(&h.storage, &spec, &changes)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("changed since it was examined"), "{error}");
    assert!(!h.ops.mutations().iter().any(|c| c.starts_with("format")));
}

#[tokio::test]
async fn removed_volumes_are_unmounted_only_when_tfagent_mounted_them() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
    let two = spec(
        "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/a\n  - name: b\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/b\npersist:\n  paths:\n    - path: /etc/rancher\n",
    );
    h.storage.converge(&two).await.unwrap();
    // A foreign mount the agent knows nothing of.
    h.ops.add_mount(FakeMount {
        major_minor: "0:70".into(),
        root: "/".into(),
        target: "/srv/foreign".into(),
        fs_type: "tmpfs".into(),
        source: "tmpfs".into(),
        shared: false,
        flags: Vec::new(),
    });
    h.ops.clear_calls();

    let one = spec(
        "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/a\npersist:\n  paths:\n    - path: /etc/rancher\n",
    );
    h.storage.converge(&one).await.unwrap();
    assert_eq!(h.ops.mutations(), vec!["unmount /srv/b"]);
    assert!(
        h.ops
            .state()
            .mounts
            .iter()
            .any(|m| m.target == "/srv/foreign")
    );
    let records = Records::load(h.storage.state_dir()).unwrap();
    assert!(records.owned("/srv/b").is_none());

    // Busy: reported, not forced, and the record kept for the next pass.
    h.ops.state().busy.push("/srv/a".into());
    let none = spec(
        "volumes:\n  - name: c\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/c\npersist:\n  paths:\n    - path: /srv/rancher2\n",
    );
    let error = h.storage.converge(&none).await.unwrap_err().to_string();
    assert!(
        error.contains("busy") && error.contains("not forced"),
        "{error}"
    );
    assert!(
        Records::load(h.storage.state_dir())
            .unwrap()
            .owned("/srv/a")
            .is_some()
    );
}

#[tokio::test]
async fn a_foreign_mount_where_a_volume_goes_is_refused() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
    h.ops.add_mount(FakeMount {
        major_minor: "0:70".into(),
        root: "/".into(),
        target: "/srv/a".into(),
        fs_type: "tmpfs".into(),
        source: "tmpfs".into(),
        shared: false,
        flags: Vec::new(),
    });
    let spec = spec(
        "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/a\n",
    );
    let error = h.storage.converge(&spec).await.unwrap_err().to_string();
    assert!(error.contains("did not mount"), "{error}");
    assert!(h.ops.mutations().is_empty());
}

#[tokio::test]
async fn a_size_change_only_updates_the_quota() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
    let small = spec(
        "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/a\n",
    );
    h.storage.converge(&small).await.unwrap();
    h.ops.clear_calls();
    let large = spec(
        "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 2GiB\n    mount_point: /srv/a\n",
    );
    h.storage.converge(&large).await.unwrap();
    assert_eq!(
        h.ops.mutations(),
        vec!["set_quota /mnt/pool/tfagent-a 2147483648"]
    );
}

#[tokio::test]
async fn a_plain_directory_where_the_subvolume_goes_is_refused() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
    h.ops
        .state()
        .paths
        .insert("/mnt/pool/tfagent-a".into(), PathKind::Other);
    let spec = spec(
        "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/a\n",
    );
    let error = h.storage.converge(&spec).await.unwrap_err().to_string();
    assert!(error.contains("not a btrfs subvolume"), "{error}");
    assert!(h.ops.mutations().is_empty());
}

#[tokio::test]
async fn a_persisted_path_is_seeded_from_what_is_already_there() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
    h.ops.state().non_empty.push("/etc/rancher".into());
    let spec = spec(
        "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/a\npersist:\n  paths:\n    - path: /etc/rancher\n",
    );
    h.storage.converge(&spec).await.unwrap();
    let mutations = h.ops.mutations();
    let copy = mutations
        .iter()
        .position(|c| c == "copy_contents /etc/rancher /srv/a/.tfagent-persist/etc/rancher")
        .expect("seeded");
    let bind = mutations
        .iter()
        .position(|c| c.starts_with("mount Bind") && c.contains(" /etc/rancher"))
        .unwrap();
    assert!(copy < bind, "{mutations:?}");
}

#[tokio::test]
async fn the_allow_list_is_enforced_at_apply_time_too() {
    let h = harness(Some(vec!["/dev/disk/by-id/nvme-*".into()]));
    h.ops
        .add_device("/dev/disk/by-id/blank", "/dev/sdy", "8:16", vec![]);
    let spec = spec(
        "volumes:\n  - name: data\n    device: /dev/disk/by-id/blank\n    mount_point: /srv/data\n",
    );
    let error = h.storage.converge(&spec).await.unwrap_err().to_string();
    assert!(
        error.starts_with(
            "volume data: /dev/disk/by-id/blank is not in the boot config's allowed_devices"
        ),
        "{error}"
    );
    assert!(h.ops.mutations().is_empty());
    let refused = h
        .storage
        .refused_devices(&spec.to_document())
        .await
        .unwrap();
    assert!(refused["/dev/disk/by-id/blank"].contains("allowed_devices"));
}

#[tokio::test]
async fn the_system_disk_is_always_refused() {
    let h = harness(None);
    // `/` is on 8:0; the candidate resolves to the same disk.
    h.ops.add_mount(FakeMount {
        major_minor: "8:0".into(),
        root: "/".into(),
        target: "/".into(),
        fs_type: "ext4".into(),
        source: "/dev/sda".into(),
        shared: false,
        flags: Vec::new(),
    });
    h.ops
        .add_device("/dev/disk/by-id/root", "/dev/sda", "8:0", ext4_with_data());
    let spec = spec(
        "volumes:\n  - name: data\n    device: /dev/disk/by-id/root\n    format: never\n    mount_point: /srv/data\n",
    );
    let refused = h
        .storage
        .refused_devices(&spec.to_document())
        .await
        .unwrap();
    assert!(
        refused["/dev/disk/by-id/root"].contains("system disk"),
        "{refused:?}"
    );
    let disks = h.storage.disks().await.unwrap();
    let sda = disks.iter().find(|d| d.path == "/dev/sda").unwrap();
    assert!(sda.refusal.is_some());
    assert!(sda.mount_points.contains(&"/".to_owned()));
}

#[tokio::test]
async fn changed_mount_flags_are_applied_with_a_remount() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
    h.ops
        .add_device("/dev/disk/by-id/blank", "/dev/sdy", "8:16", vec![]);
    let with = |options: &str| {
        spec(&format!(
            "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/a\n    mount_options: [{options}]\n  - name: d\n    device: /dev/disk/by-id/blank\n    mount_point: /srv/d\n    mount_options: [{options}]\n"
        ))
    };
    h.storage.converge(&with("noatime")).await.unwrap();
    h.ops.clear_calls();
    assert_eq!(
        h.storage.converge(&with("noatime")).await.unwrap(),
        StepOutcome::UpToDate
    );
    h.storage.converge(&with("nodev,noatime")).await.unwrap();
    assert_eq!(
        h.ops.mutations(),
        vec![
            "remount /srv/a noatime,nodev",
            "remount /srv/d noatime,nodev"
        ]
    );
    h.ops.clear_calls();
    h.storage.converge(&with("")).await.unwrap();
    assert_eq!(
        h.ops.mutations(),
        vec!["remount /srv/a ", "remount /srv/d "]
    );
    h.ops.clear_calls();
    assert_eq!(
        h.storage.converge(&with("")).await.unwrap(),
        StepOutcome::UpToDate
    );
}

#[tokio::test]
async fn a_teardown_unmounts_what_tfagent_mounted_and_destroys_nothing() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", false);
    h.ops
        .add_device("/dev/disk/by-id/blank", "/dev/sdy", "8:16", vec![]);
    // A mount tfagent did not make stays.
    h.ops.add_pool("/mnt/other", "/dev/sdx", false);
    let spec = spec(FULL);
    h.storage.converge(&spec).await.unwrap();
    h.ops.clear_calls();

    let done = Step::teardown(&h.storage, &spec).await.unwrap();
    let mutations = h.ops.mutations();
    assert_eq!(mutations.len(), 4, "{mutations:?}");
    assert!(
        mutations.iter().all(|m| m.starts_with("unmount ")),
        "only unmounts: {mutations:?}"
    );
    for target in [
        "/var/lib/rancher/k3s",
        "/srv/data",
        "/etc/rancher",
        "/var/lib/kubelet",
    ] {
        assert!(
            mutations.contains(&format!("unmount {target}")),
            "{target}: {mutations:?}"
        );
    }
    assert_eq!(done.len(), 4, "{done:?}");
    let records = Records::load(h.storage.state_dir()).unwrap();
    assert!(records.mounts.is_empty());
    // The filesystem tfagent made is still known: applying the spec again
    // mounts it without formatting.
    assert!(records.formatted("data").is_some());
    assert!(
        h.ops
            .state()
            .mounts
            .iter()
            .any(|m| m.target == "/mnt/other")
    );

    assert!(Step::teardown(&h.storage, &spec).await.unwrap().is_empty());
    h.ops.clear_calls();
    h.storage.converge(&spec).await.unwrap();
    assert!(
        !h.ops
            .mutations()
            .iter()
            .any(|m| m.starts_with("format") || m.starts_with("wipe")),
        "{:?}",
        h.ops.mutations()
    );
}

#[tokio::test]
async fn killed_between_mkfs_and_its_record_the_filesystem_is_still_ours() {
    let h = harness(None);
    h.ops
        .add_device("/dev/disk/by-id/blank", "/dev/sdy", "8:16", vec![]);
    let spec = spec(
        "
volumes:
  - name: data
    device: /dev/disk/by-id/blank
    mount_point: /srv/data
",
    );
    h.ops.state().die_after_format = true;
    h.storage.converge(&spec).await.unwrap_err();
    h.ops.state().die_after_format = false;
    h.ops.clear_calls();
    // The next start: the filesystem is mounted, never refused as a
    // stranger's, never formatted again.
    h.storage.converge(&spec).await.unwrap();
    let mutations = h.ops.mutations();
    assert!(
        !mutations
            .iter()
            .any(|m| m.starts_with("format") || m.starts_with("wipe")),
        "{mutations:?}"
    );
    assert!(
        h.ops.state().mounts.iter().any(|m| m.target == "/srv/data"),
        "{mutations:?}"
    );
}

#[tokio::test]
async fn a_mount_point_through_a_symlink_is_refused_before_any_change() {
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
    h.ops
        .state()
        .symlinks
        .insert("/srv/link".into(), "/etc".into());
    let spec = spec(
        "volumes:\n  - name: a\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/link/a\n",
    );
    let error = h.storage.converge(&spec).await.unwrap_err().to_string();
    assert!(error.contains("/srv/link is a symlink"), "{error}");
    // Refused first: not even the subvolume was made.
    assert!(h.ops.mutations().is_empty(), "{:?}", h.ops.mutations());

    // The host's own checks refuse it too, should the plan ever not.
    let ops: &dyn StorageOps = &*h.ops;
    let made = ops.make_dir(Path::new("/srv/link/a")).unwrap_err();
    assert!(matches!(made, OpsError::Symlink { ref link, .. } if link == Path::new("/srv/link")));
    let mounted = ops
        .mount(
            &MountSource::Bind {
                dir: "/mnt/pool/tfagent-a".into(),
            },
            Path::new("/srv/link/a"),
            &[],
        )
        .unwrap_err();
    assert!(matches!(mounted, OpsError::Symlink { .. }), "{mounted}");
    assert!(h.ops.state().mounts.iter().all(|m| m.target != "/etc/a"));
}

#[tokio::test]
async fn a_teardown_takes_back_a_mount_that_landed_through_a_symlink() {
    // An older agent mounted at /srv/link/a, a symlink to /srv/real: the
    // kernel put the mount at /srv/real/a, the record says /srv/link/a.
    let h = harness(None);
    h.ops.add_pool("/mnt/pool", "/dev/sdz", true);
    h.ops
        .state()
        .symlinks
        .insert("/srv/link".into(), "/srv/real".into());
    h.ops.add_mount(FakeMount {
        major_minor: "0:50".into(),
        root: "/tfagent-a".into(),
        target: "/srv/real/a".into(),
        fs_type: "btrfs".into(),
        source: "/dev/sdz".into(),
        shared: false,
        flags: Vec::new(),
    });
    let mut records = Records::default();
    records.record_mount(records::OwnedMount {
        target: "/srv/link/a".into(),
        source: "/dev/sdz".into(),
        root: "/tfagent-a".into(),
    });
    records.save(h.storage.state_dir()).unwrap();
    let spec = spec(
        "volumes:\n  - name: b\n    pool: /mnt/pool\n    size: 1GiB\n    mount_point: /srv/b\n",
    );

    let done = Step::teardown(&h.storage, &spec).await.unwrap();
    assert_eq!(h.ops.mutations(), ["unmount /srv/real/a"], "{done:?}");
    assert!(
        h.ops
            .state()
            .mounts
            .iter()
            .all(|m| m.target != "/srv/real/a")
    );
    assert!(
        Records::load(h.storage.state_dir())
            .unwrap()
            .mounts
            .is_empty()
    );
}
