#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use super::*;
use tfagent_spec::fixtures::example_spec as example;

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
    let spec_path = store.spec_path();
    drop(store);
    let mode = fs::metadata(spec_path).unwrap().permissions().mode() & 0o777;
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
    drop(store);
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
        fs::remove_file(tmp.path().join(REFUSED_FILE)).ok();
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

#[test]
fn a_second_store_on_the_same_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, _) = StateStore::open(tmp.path()).unwrap();
    let err = StateStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err}");
    drop(first);
    StateStore::open(tmp.path()).unwrap();
}

#[test]
fn a_token_of_the_wrong_type_in_the_state_file_is_not_echoed() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join(SPEC_FILE),
        r#"{"generation": 2, "spec": {"cluster": {"token": 987654321123}}}"#,
    )
    .unwrap();
    let (_, loaded) = StateStore::open(tmp.path()).unwrap();
    let refused = loaded.refused.unwrap();
    assert!(
        refused.reason.contains("cluster.token"),
        "{}",
        refused.reason
    );
    assert!(
        !refused.reason.contains("987654321123"),
        "{}",
        refused.reason
    );
    assert_eq!(refused.generation, 2);
}

#[test]
fn a_refusal_survives_a_restart_until_a_spec_is_saved() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join(SPEC_FILE),
        b"{\"generation\": 5, \"spec\": {}}",
    )
    .unwrap();
    drop(StateStore::open(tmp.path()).unwrap());
    let (store, loaded) = StateStore::open(tmp.path()).unwrap();
    let refused = loaded.refused.unwrap();
    assert_eq!(refused.generation, 5);
    assert!(
        refused.reason.contains("earlier start"),
        "{}",
        refused.reason
    );

    store
        .save(&Desired {
            generation: 6,
            spec: example("agent"),
        })
        .unwrap();
    store.clear_refused().unwrap();
    drop(store);
    let (_, loaded) = StateStore::open(tmp.path()).unwrap();
    assert!(loaded.refused.is_none());
    assert_eq!(loaded.desired.unwrap().generation, 6);
}
