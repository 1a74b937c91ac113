#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use super::*;

fn example(name: &str) -> NodeSpec {
    let text = match name {
        "server-init" => include_str!("../../../examples/server-init.yaml"),
        _ => include_str!("../../../examples/agent.yaml"),
    };
    SpecDocument::parse(text)
        .unwrap()
        .validate(&ValidationContext::default())
        .unwrap()
}

#[test]
fn empty_dir_has_no_spec_and_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let (_store, loaded) = StateStore::open(&dir).unwrap();
    assert!(loaded.desired.is_none() && loaded.refused.is_none());
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn saved_spec_is_loaded_back_and_is_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = StateStore::open(tmp.path()).unwrap();
    let desired = Desired {
        generation: 3,
        spec: example("server-init"),
    };
    store.save(&desired).unwrap();
    let mode = fs::metadata(store.spec_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let (_, loaded) = StateStore::open(tmp.path()).unwrap();
    assert_eq!(loaded.desired, Some(desired));
}

#[test]
fn crash_between_write_and_rename_keeps_the_old_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = StateStore::open(tmp.path()).unwrap();
    let old = Desired {
        generation: 1,
        spec: example("server-init"),
    };
    store.save(&old).unwrap();

    let new = Desired {
        generation: 2,
        spec: example("agent"),
    };
    let staged = store.stage(&new).unwrap();
    let temp = staged.temp_path().to_owned();
    // The process "dies" here: the new file is complete on disk, not renamed.
    staged.abandon();
    assert!(temp.exists());

    let (_, loaded) = StateStore::open(tmp.path()).unwrap();
    assert_eq!(loaded.desired, Some(old), "the old spec must survive");
    assert!(!temp.exists(), "the stale temp file is removed at open");
}

#[test]
fn failed_stage_is_cleaned_up_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = StateStore::open(tmp.path()).unwrap();
    let staged = store
        .stage(&Desired {
            generation: 1,
            spec: example("agent"),
        })
        .unwrap();
    let temp = staged.temp_path().to_owned();
    drop(staged);
    assert!(!temp.exists());
    assert!(!store.spec_path().exists());
}

#[test]
fn truncated_or_refused_files_are_set_aside_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(SPEC_FILE);
    for (content, expect, generation) in [
        (
            &b"{\"generation\": 1, \"spe"[..],
            "not a tfagent state file",
            0,
        ),
        (&b"{\"generation\": 0, \"spec\": {}}"[..], "generation 0", 0),
        (&b"{\"generation\": 7, \"spec\": {}}"[..], "refuses", 7),
    ] {
        fs::write(&path, content).unwrap();
        let (_, loaded) = StateStore::open(tmp.path()).unwrap();
        assert_eq!(loaded.desired, None);
        let refused = loaded.refused.unwrap();
        assert!(refused.reason.contains(expect), "{}", refused.reason);
        assert!(refused.reason.contains(&path.display().to_string()));
        assert_eq!(refused.generation, generation);
        assert!(!path.exists(), "moved aside");
        assert_eq!(fs::read(&refused.moved_to).unwrap(), content, "kept intact");
    }
}

#[test]
fn an_unreadable_spec_is_an_error_not_a_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory cannot be read as a file, whoever we are.
    fs::create_dir(tmp.path().join(SPEC_FILE)).unwrap();
    let err = StateStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StateError::Read { .. }), "{err}");
}
