//! The form's unit tests: the simple path, tokens, the optional sections, and every
//! error at once. `cargo test -p app --features ssr form`.

use super::*;

fn form() -> RunForm {
    RunForm {
        name: "smoke".into(),
        target: "ws://127.0.0.1:9001/echo".into(),
        connections: "50".into(),
        ramp_secs: "2".into(),
        hold_secs: "3".into(),
        message_every_secs: "1".into(),
        max_connect_rate: "".into(),
        ..Default::default()
    }
}

#[test]
fn oauth_fields_become_tokens_and_reconnect_an_unlimited_backoff() {
    let mut f = form();
    f.token_url = "http://127.0.0.1:9001/oauth/token".into();
    f.client_id = "loadtest".into();
    f.client_secret = "env:HOME".into();
    f.connections_per_token = "10".into();
    f.reconnect = "on".into();
    let p = f.to_plan().unwrap();
    let auth = p.auth.clone().unwrap();
    assert_eq!(
        auth.source,
        TokenSource::Oauth2 {
            token_url: "http://127.0.0.1:9001/oauth/token".into(),
            client_id: "loadtest".into(),
            client_secret: Secret::Env { env: "HOME".into() },
            scope: None,
            audience: None,
        }
    );
    assert_eq!(auth.policy, TokenPolicy::PerConnections { connections: 10 });
    assert_eq!(auth.header, "Authorization");
    assert_eq!(p.reconnect, Reconnect::unlimited());
    assert!(p.validate(&engine::Limits::default()).is_ok());
    f.connections_per_token = "1".into();
    assert_eq!(
        f.to_plan().unwrap().auth.unwrap().policy,
        TokenPolicy::PerConnection
    );
    f.connections_per_token = "".into();
    assert_eq!(
        f.to_plan().unwrap().auth.unwrap().policy,
        TokenPolicy::Shared
    );
}

#[test]
fn a_bearer_token_is_a_pool_of_one_and_no_tokens_no_auth() {
    let mut f = form();
    assert_eq!(f.to_plan().unwrap().auth, None);
    assert_eq!(f.to_plan().unwrap().reconnect, Reconnect::Never);
    f.bearer_token = "abc".into();
    let auth = f.to_plan().unwrap().auth.unwrap();
    assert_eq!(
        auth.source,
        TokenSource::Static {
            tokens: vec![Secret::Value("abc".into())]
        }
    );
}

#[test]
fn token_fields_that_cannot_apply_name_themselves() {
    let mut f = form();
    f.client_id = "x".into();
    f.connections_per_token = "2".into();
    let fields: Vec<String> = f
        .to_plan()
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(fields, ["client_id", "connections_per_token"]);
    let mut f = form();
    f.bearer_token = "a".into();
    f.token_url = "http://127.0.0.1:1/t".into();
    assert_eq!(f.to_plan().unwrap_err()[0].field, "bearer_token");
    let mut f = form();
    f.token_url = "http://127.0.0.1:1/t".into();
    f.connections_per_token = "0".into();
    let errs = f.to_plan().unwrap_err();
    assert_eq!(errs[0].field, "connections_per_token");
    assert!(errs[0].message.contains("`0`"), "{errs:?}");
    // Plan validation's auth fields land on the form's.
    assert_eq!(form_field_of("auth.source.client_id"), "client_id");
    assert_eq!(form_field_of("auth.source.token_url"), "token_url");
    assert_eq!(form_field_of("auth.source.tokens[0]"), "bearer_token");
    assert_eq!(
        form_field_of("auth.policy.connections"),
        "connections_per_token"
    );
}

#[test]
fn form_becomes_ramp_and_hold_with_heartbeat() {
    let p = form().to_plan().unwrap();
    assert_eq!(
        p.stages,
        vec![
            Stage {
                duration: Dur::secs(2),
                connections: 50
            },
            Stage {
                duration: Dur::secs(3),
                connections: 50
            }
        ]
    );
    assert_eq!(p.script.len(), 1);
    assert!(p.validate(&engine::Limits::default()).is_ok());
}

#[test]
fn idle_when_no_message_interval() {
    let mut f = form();
    f.message_every_secs = "0".into();
    assert!(f.to_plan().unwrap().script.is_empty());
}

#[test]
fn typos_name_their_field() {
    let mut f = form();
    f.connections = "5o".into();
    f.hold_secs = "-1".into();
    let errs = f.to_plan().unwrap_err();
    assert_eq!(
        errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
        vec!["connections", "hold_secs"]
    );
    assert!(errs[0].message.contains("`5o`"));
}

#[test]
fn plan_errors_land_on_form_fields() {
    assert_eq!(form_field_of("stages[1].connections"), "connections");
    assert_eq!(form_field_of("target"), "target");
    assert_eq!(form_field_of("stages"), "hold_secs");
}

/// The open model with a var, a correlated message and captures: the arrivals of the
/// run in the e2e test.
fn open_form() -> RunForm {
    RunForm {
        model: "open".into(),
        arrival_rate: "5".into(),
        arrivals_secs: "4".into(),
        stay: "uniform".into(),
        stay_min_secs: "1".into(),
        stay_max_secs: "2".into(),
        vars: "guest = guest-{{vu}}-{{uuid}}\n".into(),
        message: r#"{"to":"{{var.guest}}","n":"{{now_ms}}","seen":"{{var.n}}"}"#.into(),
        expect_json_field: "$.to".into(),
        expect_equals: "{{var.guest}}".into(),
        captures: "n = $.n\nto = /\"to\":\"([^\"]+)\"/\n".into(),
        ..form()
    }
}

fn valid(f: &RunForm) -> Plan {
    f.to_valid_plan(|p| p.validate(&engine::Limits::default()))
        .unwrap_or_else(|e| panic!("{e:#?}"))
}

#[test]
fn only_name_target_and_connections_give_the_plan_they_always_did() {
    let f = RunForm {
        name: "smoke".into(),
        target: "ws://127.0.0.1:9001/echo".into(),
        connections: "50".into(),
        ramp_secs: "5".into(),
        hold_secs: "10".into(),
        message_every_secs: "1".into(),
        ..Default::default()
    };
    let p = valid(&f);
    assert_eq!(p.sessions, None);
    assert!(p.vars.is_empty());
    assert_eq!(
        p.script,
        vec![Step::Repeat(Repeat {
            every: Dur::secs(1),
            times: None,
            steps: vec![
                Step::Send("hello from vu {{vu}} at {{now_ms}}".into()),
                Step::Expect(Expect {
                    contains: Some("hello from vu {{vu}}".into()),
                    timeout: Dur::secs(5),
                    ..Default::default()
                }),
            ],
        })]
    );
    // The page's defaults for the optional sections change nothing while the closed
    // model is chosen and the texts are empty.
    let with_defaults = RunForm {
        model: "closed".into(),
        stay: "exponential".into(),
        stay_secs: "30".into(),
        stay_sigma: "1".into(),
        rotation: "off".into(),
        ..f
    };
    assert_eq!(valid(&with_defaults), p);
}

#[test]
fn the_open_model_vars_message_and_captures_round_trip_into_a_valid_plan() {
    let p = valid(&open_form());
    assert!(p.stages.is_empty());
    let s = p.sessions.clone().unwrap();
    assert_eq!(
        s.arrivals,
        vec![ArrivalStage {
            duration: Dur::secs(4),
            rate: 5.0,
            to: None
        }]
    );
    assert_eq!(
        s.stay,
        Stay::Uniform {
            min: Dur::secs(1),
            max: Dur::secs(2)
        }
    );
    assert_eq!(p.vars["guest"], "guest-{{vu}}-{{uuid}}");
    let Step::Repeat(r) = &p.script[0] else {
        panic!("{:?}", p.script)
    };
    let Step::Expect(e) = &r.steps[1] else {
        panic!("{:?}", r.steps)
    };
    assert_eq!(e.json_field.as_deref(), Some("$.to"));
    assert_eq!(e.equals, Some(serde_json::json!("{{var.guest}}")));
    assert_eq!(e.capture["n"].json.as_deref(), Some("$.n"));
    assert_eq!(
        e.capture["to"].regex.as_deref(),
        Some("\"to\":\"([^\"]+)\"")
    );
    // The plan survives the JSON it is stored as.
    let back: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    // Every stay distribution maps onto the engine's.
    for (dist, want) in [
        (
            "fixed",
            Stay::Fixed {
                duration: Dur::secs(30),
            },
        ),
        (
            "exponential",
            Stay::Exponential {
                mean: Dur::secs(30),
            },
        ),
        (
            "log_normal",
            Stay::LogNormal {
                median: Dur::secs(30),
                sigma: 0.8,
            },
        ),
    ] {
        let f = RunForm {
            stay: dist.into(),
            stay_secs: "30".into(),
            stay_sigma: "0.8".into(),
            ..open_form()
        };
        assert_eq!(valid(&f).sessions.unwrap().stay, want, "{dist}");
    }
}

#[test]
fn rotation_takes_a_message_or_reconnects_and_needs_oauth() {
    let mut f = form();
    f.token_url = "http://127.0.0.1:9001/oauth/token".into();
    f.client_id = "loadtest".into();
    f.rotation = "reauth".into();
    f.rotation_message = r#"{"action":"refresh","token":"{{token}}"}"#.into();
    let rotation = valid(&f).auth.unwrap().rotation;
    assert_eq!(
        rotation,
        Some(Rotation::Reauth {
            message: f.rotation_message.clone(),
            expect: None
        })
    );
    f.rotation = "reconnect".into();
    assert_eq!(valid(&f).auth.unwrap().rotation, Some(Rotation::Reconnect));
    f.rotation = "off".into();
    assert_eq!(valid(&f).auth.unwrap().rotation, None);
    f.rotation = "reauth".into();
    f.rotation_message = " ".into();
    assert_eq!(f.to_plan().unwrap_err()[0].field, "rotation_message");
    let mut f = form();
    f.bearer_token = "abc".into();
    f.rotation = "reconnect".into();
    assert_eq!(f.to_plan().unwrap_err()[0].field, "rotation");
}

#[test]
fn six_bad_values_are_six_errors_in_one_call() {
    let f = RunForm {
        target: "http://127.0.0.1:9001/echo".into(),
        arrival_rate: "fast".into(),
        stay: "log_normal".into(),
        stay_secs: "30".into(),
        stay_sigma: "9".into(),
        vars: "guest = {{uuid}}\nno equals here\n".into(),
        captures: "n = /unclosed\n".into(),
        message_every_secs: "-2".into(),
        ..open_form()
    };
    let errs = f
        .to_valid_plan(|p| p.validate(&engine::Limits::default()))
        .unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    // Read errors first (in form order), then the plan's own validation's.
    assert_eq!(
        fields,
        [
            "arrival_rate",
            "message_every_secs",
            "vars",
            "captures",
            "target",
            "stay_sigma"
        ],
        "{errs:#?}"
    );
    assert!(errs[2].message.starts_with("line 2: "), "{errs:#?}");
    assert!(errs[3].message.starts_with("line 1: "), "{errs:#?}");
    // to_plan alone reports what it can read: the four unreadable fields.
    assert_eq!(f.to_plan().unwrap_err().len(), 4);
}

#[test]
fn plan_errors_on_the_new_sections_land_on_their_fields() {
    for (plan, form) in [
        ("sessions.arrivals[0].rate", "arrival_rate"),
        ("sessions.arrivals[0].duration", "arrivals_secs"),
        ("sessions.arrivals", "arrivals_secs"),
        ("sessions", "arrival_rate"),
        ("sessions.stay.duration", "stay_secs"),
        ("sessions.stay.mean", "stay_secs"),
        ("sessions.stay.median", "stay_secs"),
        ("sessions.stay.min", "stay_min_secs"),
        ("sessions.stay.max", "stay_max_secs"),
        ("sessions.stay.sigma", "stay_sigma"),
        ("vars.guest", "vars"),
        ("auth.rotation", "rotation"),
        ("auth.rotation.message", "rotation_message"),
        ("script[0].repeat.every", "message_every_secs"),
        ("script[0].repeat.steps[0]", "message"),
        ("script[0].repeat.steps[0].send", "message"),
        (
            "script[0].repeat.steps[1].expect.json_field",
            "expect_json_field",
        ),
        ("script[0].repeat.steps[1].expect.equals", "expect_equals"),
        (
            "script[0].repeat.steps[1].expect.capture.n.regex",
            "captures",
        ),
    ] {
        assert_eq!(form_field_of(plan), form, "{plan}");
    }
    // A message using a variable nothing defines, a bad var template and a bad regex:
    // named by the entry they are about.
    let f = RunForm {
        vars: "guest = {{nope}}".into(),
        message: "{{var.missing}}".into(),
        captures: "n = /(/".into(),
        ..open_form()
    };
    let errs = f
        .to_valid_plan(|p| p.validate(&engine::Limits::default()))
        .unwrap_err();
    let has = |field: &str, start: &str| {
        assert!(
            errs.iter()
                .any(|e| e.field == field && e.message.starts_with(start)),
            "{field} / {start}: {errs:#?}"
        )
    };
    has("vars", "guest: ");
    has("message", "`{{var.missing}}` is not defined");
    has("captures", "n: ");
}

#[test]
fn message_parts_without_a_place_to_go_name_their_field() {
    let mut f = form();
    f.message_every_secs = "0".into();
    f.message = "hi".into();
    assert_eq!(f.to_plan().unwrap_err()[0].field, "message_every_secs");
    let mut f = form();
    f.expect_equals = "x".into();
    assert_eq!(f.to_plan().unwrap_err()[0].field, "expect_equals");
    let mut f = form();
    f.message = "hi".into();
    f.captures = "n = $.n".into();
    assert_eq!(f.to_plan().unwrap_err()[0].field, "captures");
    // A message of one's own with no reply field is sent without waiting.
    f.captures.clear();
    let Step::Repeat(r) = &f.to_plan().unwrap().script[0] else {
        panic!()
    };
    assert_eq!(r.steps, vec![Step::Send("hi".into())]);
}

#[test]
fn any_numbers_typed_into_the_open_model_are_read_or_named() {
    // A small property check over hand-picked edge texts: each field either reads or
    // is the one field named, and what reads validates or is named by validation.
    let texts = ["0", "1", "2.5", "", " 7 ", "-1", "x", "1e3", "NaN", "inf"];
    for (i, a) in texts.iter().enumerate() {
        for b in texts.iter().skip(i % 3) {
            let f = RunForm {
                arrival_rate: a.to_string(),
                arrivals_secs: b.to_string(),
                ..open_form()
            };
            match f.to_valid_plan(|p| p.validate(&engine::Limits::default())) {
                Ok(p) => assert!(p.sessions.is_some()),
                Err(errs) => {
                    for e in &errs {
                        assert!(
                            ["arrival_rate", "arrivals_secs"].contains(&e.field.as_str()),
                            "{a:?} {b:?}: {errs:#?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_plan_the_form_built_comes_back_as_the_same_fields() {
    let mut oauth = form();
    oauth.token_url = "http://127.0.0.1:1/oauth/token".into();
    oauth.client_id = "loadtest".into();
    oauth.client_secret = "s3cret".into();
    oauth.connections_per_token = "30".into();
    oauth.reconnect = "on".into();
    oauth.message = "{\"to\":\"x\"}".into();
    oauth.expect_json_field = "$.to".into();
    oauth.expect_equals = "x".into();
    for f in [form(), oauth] {
        let plan = f.to_plan().unwrap();
        let back = RunForm::from_plan(&plan).expect("the form can show it");
        assert_eq!(back.to_plan().unwrap(), plan);
    }
    // A stored (redacted) plan: the field says so, and the plan is still the form's.
    let mut f = form();
    f.bearer_token = "typed-token-1".into();
    let stored = f.to_plan().unwrap().redacted();
    assert_eq!(
        RunForm::from_plan(&stored).unwrap().bearer_token,
        engine::plan::REDACTED
    );
    // Anything the form has no field for: the JSON editor instead.
    let mut with_header = form().to_plan().unwrap();
    with_header.headers.insert("X-Team".into(), "a".into());
    assert_eq!(RunForm::from_plan(&with_header), None);
}
