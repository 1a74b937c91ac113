#![allow(clippy::unwrap_used)]
use super::*;
use crate::host::probe::parse_mountinfo;
use tfagent_spec::{Label, StorageDoc, ValidationContext, fixtures::example_document};

fn volume(format: FormatPolicy, wipe: Option<&str>) -> Volume {
    Volume {
        name: "data".parse::<Label>().unwrap(),
        source: VolumeSource::Device("/dev/sdb".parse().unwrap()),
        filesystem: Filesystem::Btrfs,
        mount_point: "/srv/data".parse().unwrap(),
        mount_options: vec![],
        format,
        wipe_signature: wipe.map(|w| w.parse().unwrap()),
    }
}

fn sig(kind: &str, usage: &str, uuid: &str) -> Signature {
    Signature {
        kind: kind.into(),
        usage: usage.into(),
        uuid: Some(uuid.into()),
    }
}

const U1: &str = "11111111-1111-1111-1111-111111111111";
const U2: &str = "22222222-2222-2222-2222-222222222222";

/// Policy, wipe_signature, what the device holds, the UUID tfagent made,
/// and the verdict (`None`: refused).
type Case<'a> = (
    FormatPolicy,
    Option<&'a str>,
    &'a Vec<Signature>,
    Option<&'a str>,
    Option<DeviceVerdict>,
);

#[test]
fn the_format_policy_against_every_kind_of_device() {
    use DeviceVerdict::{Format, Mount};
    use FormatPolicy::{IfBlank, Never, Wipe};
    let blank: Vec<Signature> = vec![];
    let btrfs = vec![sig("btrfs", "filesystem", U1)];
    let ext4 = vec![sig("ext4", "filesystem", U1)];
    let table = vec![sig("gpt", "partition table", U1)];
    let lvm = vec![sig("LVM2_member", "raid", U1)];
    let luks = vec![sig("crypto_LUKS", "crypto", U1)];
    let swap = vec![sig("swap", "other", U1)];
    let raid = vec![sig("linux_raid_member", "raid", U1)];
    // A partition table with a filesystem inside, as blkid -p sees a disk
    // formatted over a stale table.
    let table_and_fs = vec![
        sig("gpt", "partition table", U2),
        sig("ext4", "filesystem", U1),
    ];
    let refused = |v: &DeviceVerdict| matches!(v, DeviceVerdict::Refuse(_));

    // (policy, wipe_signature, found, ours, expected: None = refused)
    let cases: Vec<Case<'_>> = vec![
        (IfBlank, None, &blank, None, Some(Format { wipe: false })),
        (IfBlank, None, &btrfs, None, None),
        (IfBlank, None, &btrfs, Some(U1), Some(Mount)),
        (IfBlank, None, &btrfs, Some(U2), None),
        (IfBlank, None, &ext4, None, None),
        (IfBlank, None, &ext4, Some(U1), None),
        (IfBlank, None, &table, None, None),
        (IfBlank, None, &lvm, None, None),
        (IfBlank, None, &luks, None, None),
        (IfBlank, None, &swap, None, None),
        (IfBlank, None, &raid, None, None),
        (Never, None, &blank, None, None),
        (Never, None, &btrfs, None, Some(Mount)),
        (Never, None, &ext4, None, None),
        (Never, None, &table, None, None),
        (
            Wipe,
            Some("blank"),
            &blank,
            None,
            Some(Format { wipe: false }),
        ),
        (Wipe, Some("blank"), &ext4, None, None),
        (Wipe, Some(U1), &blank, None, None),
        (Wipe, Some(U1), &ext4, None, Some(Format { wipe: true })),
        (Wipe, Some(U1), &table, None, Some(Format { wipe: true })),
        (Wipe, Some(U1), &luks, None, Some(Format { wipe: true })),
        (Wipe, Some(U2), &ext4, None, None),
        (Wipe, Some(U2), &btrfs, None, None),
        // Naming one of two signatures does not wipe the other with it.
        (Wipe, Some(U1), &table_and_fs, None, None),
        (Wipe, Some(U2), &table_and_fs, None, None),
        // After tfagent's own wipe the UUID is new; the stale one in the
        // spec must not make it wipe again, nor refuse its own filesystem.
        (Wipe, Some(U2), &btrfs, Some(U1), Some(Mount)),
    ];
    for (policy, wipe, found, ours, expected) in cases {
        let verdict = device_verdict(&volume(policy, wipe), "/dev/sdb", found, ours);
        match expected {
            Some(expected) => assert_eq!(verdict, expected, "{policy} {wipe:?} {found:?} {ours:?}"),
            None => assert!(
                refused(&verdict),
                "{policy} {wipe:?} {found:?} {ours:?}: {verdict:?}"
            ),
        }
    }
}

#[test]
fn refusals_name_the_signature_and_say_what_to_do() {
    let ext4 = vec![sig("ext4", "filesystem", U1)];
    let DeviceVerdict::Refuse(text) = device_verdict(
        &volume(FormatPolicy::IfBlank, None),
        "/dev/sdb",
        &ext4,
        None,
    ) else {
        panic!()
    };
    assert!(
        text.contains(&format!("ext4 filesystem (UUID {U1})")),
        "{text}"
    );
    assert!(text.contains("format: never") && text.contains(&format!("wipe_signature: {U1}")));
    let DeviceVerdict::Refuse(text) = device_verdict(
        &volume(FormatPolicy::Wipe, Some(U2)),
        "/dev/sdb",
        &ext4,
        None,
    ) else {
        panic!()
    };
    assert!(text.contains(U2) && text.contains("stale"), "{text}");
}

fn spec(storage_yaml: &str) -> NodeSpec {
    let mut document = example_document("agent");
    document.storage = serde_yaml_ng::from_str::<StorageDoc>(storage_yaml).unwrap();
    document.validate(&ValidationContext::default()).unwrap()
}

fn present(node: &str) -> DeviceState {
    DeviceState::Present {
        node: DeviceNode {
            path: node.into(),
            major_minor: "8:16".into(),
        },
        signatures: Some(vec![]),
    }
}

#[test]
fn mounts_go_outermost_first_and_binds_between_the_phases() {
    // A volume inside a persisted path goes on top of the bind mount.
    let spec = spec(
        "volumes:
  - name: outer
    device: /dev/sdb
    mount_point: /data
  - name: inner
    device: /dev/sdc
    mount_point: /var/lib/kubelet/pods/vol
persist:
  paths:
    - path: /var/lib/kubelet
    - path: /etc/rancher
",
    );
    let observed = Observed {
        mounts: parse_mountinfo("1 0 0:1 / / rw - tmpfs rootfs rw\n"),
        devices: [
            ("/dev/sdb", present("/dev/sdb")),
            ("/dev/sdc", present("/dev/sdc")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        ..Observed::default()
    };
    let changes = plan(&spec, &observed);
    let targets: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Mount { target, .. } => Some(target.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        targets,
        [
            "/data",
            "/etc/rancher",
            "/var/lib/kubelet",
            "/var/lib/kubelet/pods/vol"
        ]
    );
    let formats = changes
        .iter()
        .take_while(|c| matches!(c, Change::Format { .. }))
        .count();
    assert_eq!(formats, 2, "preparation before mounts: {changes:#?}");
    let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert!(
        shown.contains(
            &"bind-mount /data/.tfagent-persist/var/lib/kubelet at /var/lib/kubelet, rshared"
                .to_owned()
        ),
        "{shown:#?}"
    );
}

#[test]
fn refusals_come_first_and_a_missing_pool_or_device_is_refused() {
    let spec = spec(
        "volumes:
  - name: a
    pool: /mnt/nopool
    size: 1GiB
    mount_point: /srv/a
  - name: b
    device: /dev/nodev
    mount_point: /srv/b
  - name: c
    device: /dev/sdb
    mount_point: /srv/c
",
    );
    let observed = Observed {
        devices: [("/dev/sdb".to_owned(), present("/dev/sdb"))]
            .into_iter()
            .collect(),
        ..Observed::default()
    };
    let changes = plan(&spec, &observed);
    assert!(
        matches!(&changes[0], Change::Refuse { reason, .. } if reason.contains("no btrfs pool is mounted at /mnt/nopool"))
    );
    assert!(
        matches!(&changes[1], Change::Refuse { reason, .. } if reason.contains("/dev/nodev does not exist"))
    );
    assert!(
        changes[2..]
            .iter()
            .all(|c| !matches!(c, Change::Refuse { .. }))
    );
}

#[test]
fn stale_records_are_forgotten_and_replaced_mounts_unmounted_first() {
    let spec = spec(
        "volumes:\n  - name: c\n    device: /dev/sdb\n    format: never\n    mount_point: /srv/c\n",
    );
    let mut records = Records::default();
    // Ours at /srv/c from another device (the spec changed its device).
    records.record_mount(OwnedMount {
        target: "/srv/c".into(),
        source: "/dev/sdx".into(),
        root: "/".into(),
    });
    // Ours once, now something else is there.
    records.record_mount(OwnedMount {
        target: "/srv/gone".into(),
        source: "/dev/sdq".into(),
        root: "/".into(),
    });
    let observed = Observed {
        mounts: parse_mountinfo(
            "10 1 8:48 / /srv/c rw - ext4 /dev/sdx rw\n11 1 0:9 / /srv/gone rw - tmpfs tmpfs rw\n",
        ),
        devices: [(
            "/dev/sdb".to_owned(),
            DeviceState::Present {
                node: DeviceNode {
                    path: "/dev/sdb".into(),
                    major_minor: "8:16".into(),
                },
                signatures: Some(vec![sig("btrfs", "filesystem", U1)]),
            },
        )]
        .into_iter()
        .collect(),
        records,
        ..Observed::default()
    };
    // The default persisted paths follow the volume; not the point here.
    let shown: Vec<String> = plan(&spec, &observed)
        .iter()
        .map(ToString::to_string)
        .take(3)
        .collect();
    assert_eq!(
        shown,
        [
            "unmount /srv/c (replaced by what the spec now asks)",
            "forget /srv/gone: no longer the mount tfagent made",
            "mount /dev/sdb (btrfs) at /srv/c",
        ]
    );
}

#[test]
fn propagation_drift_is_corrected_in_place() {
    let spec = spec(
        "volumes:\n  - name: a\n    device: /dev/sdb\n    format: never\n    mount_point: /data\npersist:\n  paths:\n    - path: /var/lib/kubelet\n",
    );
    let observed = Observed {
        mounts: parse_mountinfo(
            "10 1 0:40 / /data rw - btrfs /dev/sdb rw\n11 1 0:40 /.tfagent-persist/var/lib/kubelet /var/lib/kubelet rw - btrfs /dev/sdb rw\n",
        ),
        devices: [(
            "/dev/sdb".to_owned(),
            DeviceState::Present {
                node: DeviceNode {
                    path: "/dev/sdb".into(),
                    major_minor: "8:16".into(),
                },
                signatures: None,
            },
        )]
        .into_iter()
        .collect(),
        ..Observed::default()
    };
    let shown: Vec<String> = plan(&spec, &observed)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["make /var/lib/kubelet rshared"]);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn arb_signature() -> impl Strategy<Value = Signature> {
        (
            prop::sample::select(vec![
                ("btrfs", "filesystem"),
                ("ext4", "filesystem"),
                ("xfs", "filesystem"),
                ("dos", "partition table"),
                ("gpt", "partition table"),
                ("LVM2_member", "raid"),
                ("linux_raid_member", "raid"),
                ("crypto_LUKS", "crypto"),
                ("swap", "other"),
            ]),
            prop::option::of(prop::sample::select(vec![U1, U2])),
        )
            .prop_map(|((kind, usage), uuid)| Signature {
                kind: kind.into(),
                usage: usage.into(),
                uuid: uuid.map(str::to_owned),
            })
    }

    proptest! {
        /// Whatever a device holds, it is formatted only when it is blank
        /// (and the policy allows it), or when `wipe` names one of its
        /// signatures exactly; a filesystem is mounted as it is only with
        /// `never` or when tfagent made it.
        #[test]
        fn nothing_is_formatted_or_adopted_without_permission(
            signatures in prop::collection::vec(arb_signature(), 0..3),
            policy in prop::sample::select(FormatPolicy::ALL),
            wipe in prop::sample::select(vec!["blank", U1, U2]),
            filesystem in prop::sample::select(Filesystem::ALL),
            ours in prop::option::of(prop::sample::select(vec![U1, U2])),
        ) {
            let mut volume = volume(policy, (policy == FormatPolicy::Wipe).then_some(wipe));
            volume.filesystem = filesystem;
            let verdict = device_verdict(&volume, "/dev/sdb", &signatures, ours);
            match verdict {
                DeviceVerdict::Format { wipe: false } => {
                    prop_assert!(signatures.is_empty());
                    prop_assert!(policy != FormatPolicy::Never);
                }
                DeviceVerdict::Format { wipe: true } => {
                    prop_assert_eq!(policy, FormatPolicy::Wipe);
                    prop_assert!(signatures.iter().any(|s| s.uuid.as_deref() == Some(wipe)));
                }
                DeviceVerdict::Mount => {
                    prop_assert_eq!(signatures.len(), 1);
                    prop_assert_eq!(signatures[0].kind.as_str(), filesystem.as_str());
                    prop_assert!(
                        policy == FormatPolicy::Never
                            || (ours.is_some() && signatures[0].uuid.as_deref() == ours)
                    );
                }
                DeviceVerdict::Refuse(reason) => prop_assert!(reason.contains("/dev/sdb")),
            }
        }
    }
}
