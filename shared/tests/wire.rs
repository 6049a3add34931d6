//! The JSON contract, both directions, and delta merging.

use shared::{
    input::InputError,
    wire::{Command, CommandError, Delta, Snapshot, Status, Update},
    Collatz, Settings,
};

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

#[test]
fn commands_have_a_stable_shape() {
    let cases = [
        (
            Command::SetNumber { text: "27".into() },
            r#"{"type":"set_number","text":"27"}"#,
        ),
        (
            Command::SetRunning { running: false },
            r#"{"type":"set_running","running":false}"#,
        ),
        (
            Command::SetInterval { ms: 0 },
            r#"{"type":"set_interval","ms":0}"#,
        ),
    ];
    for (command, json) in cases {
        assert_eq!(serde_json::to_string(&command).unwrap(), json);
        assert_eq!(serde_json::from_str::<Command>(json).unwrap(), command);
    }
}

#[test]
fn malformed_commands_are_refused_not_guessed() {
    for json in [
        r#"{"type":"set_number","text":27}"#,
        r#"{"type":"explode"}"#,
        r#"{"type":"set_interval","ms":-1}"#,
        r#"{"type":"set_interval","ms":1.5}"#,
        "not json",
    ] {
        assert!(serde_json::from_str::<Command>(json).is_err(), "{json}");
    }
}

#[test]
fn errors_round_trip_with_their_messages() {
    let errors = [
        CommandError::Number {
            reason: InputError::TooLong {
                digits: 1001,
                max: 1000,
            },
        },
        CommandError::Number {
            reason: InputError::Sign,
        },
        CommandError::Interval { max_ms: 10_000 },
    ];
    for error in errors {
        let back = round_trip(&error);
        assert_eq!(back.to_string(), error.to_string());
        assert_eq!(back, error);
    }
}

/// A machine that ran 27 for a while, paused, and took a big number.
fn busy_machine() -> (Collatz, Vec<Delta>) {
    let mut m = Collatz::new(Settings::default());
    let mut deltas = Vec::new();
    // Each run stamped with when it began, which pages are sent.
    let outcome = m
        .apply_at(&Command::SetNumber { text: "27".into() }, Some(1_000))
        .unwrap();
    deltas.push(outcome.delta.unwrap());
    let generation = outcome.start_task.unwrap();
    for _ in 0..10 {
        deltas.push(m.step(generation).unwrap());
    }
    let big = "123456789012345678901234567890123456789012345678901234567890";
    deltas.push(
        m.apply_at(&Command::SetNumber { text: big.into() }, Some(2_000))
            .unwrap()
            .delta
            .unwrap(),
    );
    // Settings changed between steps, which the steps do not repeat.
    let policy = shared::wire::Unwatched::Pause { minutes: 5 };
    for command in [
        Command::SetInterval { ms: 200 },
        Command::SetUnwatched { policy },
        Command::SetRunning { running: false },
    ] {
        for _ in 0..2 {
            deltas.push(m.step(generation).unwrap());
        }
        deltas.push(m.apply(&command).unwrap().delta.unwrap());
    }
    (m, deltas)
}

#[test]
fn snapshots_and_deltas_round_trip_exactly() {
    let (m, deltas) = busy_machine();
    let snapshot = m.snapshot();
    assert_eq!(round_trip(&snapshot), snapshot);
    let update: Update = Update::Snapshot(snapshot);
    assert_eq!(round_trip(&update), update);
    for delta in deltas {
        assert_eq!(round_trip(&delta), delta);
        let update = Update::Delta(delta);
        assert_eq!(round_trip(&update), update);
    }
}

#[test]
fn an_update_is_read_tag_first_and_refused_otherwise() {
    let (m, deltas) = busy_machine();
    let snapshot = Update::Snapshot(m.snapshot());
    let text = serde_json::to_string(&snapshot).unwrap();
    assert!(text.starts_with(r#"{"type":"snapshot","#), "{text}");
    assert_eq!(serde_json::from_str::<Update>(&text).unwrap(), snapshot);
    let delta = Update::Delta(deltas[3].clone());
    let text = serde_json::to_string(&delta).unwrap();
    assert_eq!(
        serde_json::from_slice::<Update>(text.as_bytes()).unwrap(),
        delta
    );
    // The tag elsewhere, an unknown tag, no tag: refused, with the reason.
    let later = text
        .replacen(r#""type":"delta","#, "", 1)
        .replacen('}', r#","type":"delta"}"#, 1);
    let error = serde_json::from_str::<Update>(&later)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(r#"the first field must be "type""#),
        "{error}"
    );
    let unknown = serde_json::from_str::<Update>(r#"{"type":"reset","version":1}"#).unwrap_err();
    assert!(
        unknown.to_string().contains("unknown variant `reset`"),
        "{unknown}"
    );
    assert!(serde_json::from_str::<Update>("{}").is_err());
    assert!(serde_json::from_str::<Update>("[]").is_err());
}

#[test]
fn big_values_travel_as_strings() {
    let (m, deltas) = busy_machine();
    let json = serde_json::to_value(Update::Snapshot(m.snapshot())).unwrap();
    assert_eq!(json["type"], "snapshot");
    assert_eq!(json["status"], "paused");
    assert!(json["run"]["start"].is_string());
    assert_eq!(
        json["run"]["start"],
        "123456789012345678901234567890123456789012345678901234567890"
    );
    let step = serde_json::to_value(Update::Delta(deltas[1].clone())).unwrap();
    assert_eq!(step["type"], "delta");
    assert_eq!(step["appended"], serde_json::json!(["82"]));
    assert_eq!(step["peak"], "82");
    // A step carries only what changed: no restart flag, no start value,
    // and none of the settings, which the step left as they were.
    assert!(step.get("restart").is_none());
    for setting in ["status", "interval_ms", "failure", "unwatched"] {
        assert!(step.get(setting).is_none(), "{setting} in {step}");
    }
    // The delta that began the run changed the status: it names them all.
    let began = serde_json::to_value(Update::Delta(deltas[0].clone())).unwrap();
    assert_eq!(
        (&began["status"], &began["interval_ms"]),
        (&serde_json::json!("running"), &serde_json::json!(500))
    );
}

#[test]
fn merged_deltas_rebuild_the_same_state() {
    let (m, deltas) = busy_machine();
    let start = Snapshot {
        version: 0,
        status: Status::Idle,
        interval_ms: 500,
        failure: None,
        run: None,
        unwatched: Default::default(),
        started_at: None,
    };
    // One at a time.
    let mut one_by_one = start.clone();
    for delta in &deltas {
        one_by_one.apply(delta, 256).unwrap();
    }
    assert_eq!(one_by_one, m.snapshot());
    assert_eq!(one_by_one.started_at, Some(2_000), "the second run's start");
    // Any suffix merged into one message, applied on top of its prefix.
    for split in 0..deltas.len() {
        let mut client = start.clone();
        for delta in &deltas[..split] {
            client.apply(delta, 256).unwrap();
        }
        let merged = deltas[split..]
            .iter()
            .cloned()
            .reduce(Delta::merge)
            .unwrap();
        assert_eq!(merged.base, client.version);
        client.apply(&merged, 256).unwrap();
        assert_eq!(client, m.snapshot(), "split at {split}");
    }
}

#[test]
fn a_gap_is_detected_and_an_old_delta_ignored() {
    let (_, deltas) = busy_machine();
    let mut client: Snapshot = Snapshot {
        version: 0,
        status: Status::Idle,
        interval_ms: 500,
        failure: None,
        run: None,
        unwatched: Default::default(),
        started_at: None,
    };
    let gap = client.apply(&deltas[1], 256).unwrap_err();
    assert_eq!((gap.have, gap.base), (0, 1));
    client.apply(&deltas[0], 256).unwrap();
    let seen = client.clone();
    client.apply(&deltas[0], 256).unwrap();
    assert_eq!(client, seen, "a repeated delta changes nothing");
}

#[test]
fn a_failure_is_named_as_it_travels_and_one_from_a_newer_version_is_still_read() {
    use shared::wire::Failure;
    for failure in [
        Failure::StoreRefused,
        Failure::Crashed,
        Failure::StepLimit,
        Failure::Unnamed,
    ] {
        let text = serde_json::to_string(&failure).unwrap();
        assert_eq!(
            serde_json::from_str::<Failure>(&text).unwrap(),
            failure,
            "{text}"
        );
    }
    assert_eq!(
        serde_json::to_string(&Failure::StepLimit).unwrap(),
        r#""step_limit""#
    );
    // A reason a newer node gave: read, so its run is not taken for damaged.
    let later: Failure = serde_json::from_str(r#""out_of_credit""#).unwrap();
    assert_eq!(later, Failure::Unnamed);
    assert!(later.may_retry());
    assert!(
        serde_json::from_str::<Failure>("7").is_err(),
        "not a name at all"
    );
}

#[test]
fn a_status_is_named_as_it_travels() {
    for status in [
        Status::Idle,
        Status::Running,
        Status::Paused,
        Status::Finished,
        Status::Cancelled,
        Status::Failed,
    ] {
        assert_eq!(serde_json::to_value(status).unwrap(), status.name());
    }
}

#[test]
fn a_partial_list_replaces_the_runs_it_names_and_leaves_the_others() {
    use shared::wire::{Listed, Runs};
    let run = |id: &str, status: Status, steps: u64| Listed {
        id: id.into(),
        status,
        steps,
        failure: None,
        started_at: None,
        run: None,
    };
    let mut shown = Vec::new();
    let full = Runs {
        selected: "b".into(),
        runs: vec![run("b", Status::Running, 1), run("a", Status::Running, 5)],
        partial: false,
    };
    round_trip(&full).apply(&mut shown);
    assert_eq!(shown, full.runs);
    let partial: Runs = serde_json::from_str(
        r#"{"selected":"b","runs":[{"id":"a","status":"paused","steps":6,"run":null}],"partial":true}"#,
    )
    .unwrap();
    partial.apply(&mut shown);
    assert_eq!(
        shown,
        [run("b", Status::Running, 1), run("a", Status::Paused, 6)],
        "a's row replaced in place, b's as it was"
    );
    let json = serde_json::to_string(&full).unwrap();
    assert!(
        !json.contains("partial"),
        "a full list says nothing: {json}"
    );
}
