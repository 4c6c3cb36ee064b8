use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccc";
const U: &str = "uuuuuuuuuuuuuuuuuuuuuuuuuu";

fn item(key: ItemKey, at: Millis) -> Item {
    Item {
        key,
        kind: ItemKind::Thread,
        channel_id: C.into(),
        team_id: String::new(),
        last_activity_at: at,
        counts: Counts::default(),
    }
}

fn thread(following: bool) -> ThreadFacts {
    ThreadFacts {
        root_id: A.into(),
        channel_id: C.into(),
        team_id: "tttttttttttttttttttttttttt".into(),
        reply_count: 3,
        last_reply_at: 2_000,
        last_viewed_at: 1_500,
        unread_replies: 2,
        unread_mentions: 1,
        is_urgent: false,
        following,
        delete_at: 0,
    }
}

fn root() -> RootFacts {
    RootFacts {
        create_at: 1_000,
        delete_at: 0,
        channel_last_viewed_at: 0,
        has_replies: false,
    }
}

#[test]
fn ids_and_keys() {
    assert!(is_valid_id(A));
    for bad in [
        "",
        "short",
        &A.to_uppercase(),
        &format!("{A}a"),
        "aaaaaaaaaaaaaaaaaaaaaaaaa-",
    ] {
        assert!(!is_valid_id(bad), "{bad}");
    }
    let t = ItemKey::thread(A).unwrap();
    assert_eq!(t.to_string(), format!("t_{A}"));
    assert_eq!(ItemKey::parse(&t.to_string()), Ok(t.clone()));
    let c = ItemKey::channel(B).unwrap();
    assert_eq!(c.as_string(), format!("c_{B}"));
    assert_eq!(c.id(), B);
    for bad in [
        "",
        "t_",
        "x_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "t_AAAAAAAAAAAAAAAAAAAAAAAAAA",
        "c_a",
    ] {
        assert_eq!(ItemKey::parse(bad), Err(BadItemKey), "{bad}");
    }
    for k in [
        ItemKind::Thread,
        ItemKind::Direct,
        ItemKind::Group,
        ItemKind::Mention,
    ] {
        assert_eq!(ItemKind::parse(k.as_str()), Some(k));
    }
    for t in ["O", "P", "D", "G"] {
        assert_eq!(ChannelType::parse(t).map(ChannelType::as_str), Some(t));
    }
    assert_eq!(ChannelType::parse("X"), None);
}

#[test]
fn queue_membership_table() {
    // (last_activity, done_at, snoozed_until, now, expected state)
    type Case = (Millis, Option<Millis>, Option<Millis>, Millis, ItemState);
    let cases: &[Case] = &[
        (100, None, None, 500, ItemState::Open),
        (100, Some(99), None, 500, ItemState::Open),
        // activity exactly at the done mark is not new
        (100, Some(100), None, 500, ItemState::Done),
        (100, Some(101), None, 500, ItemState::Done),
        // snoozed past now
        (100, None, Some(501), 500, ItemState::Snoozed),
        // snooze expiring exactly now: back in the queue
        (100, None, Some(500), 500, ItemState::Open),
        (100, None, Some(499), 500, ItemState::Open),
        // done wins over snooze (nothing new to show)
        (100, Some(200), Some(900), 500, ItemState::Done),
        // new activity after done while snoozed stays snoozed
        (300, Some(200), Some(900), 500, ItemState::Snoozed),
    ];
    for (i, &(at, done, snooze, now, want)) in cases.iter().enumerate() {
        let marks = Marks {
            done_at: done,
            snoozed_until: snooze,
        };
        assert_eq!(state(at, &marks, now), want, "case {i}");
        let it = item(ItemKey::thread(A).unwrap(), at);
        assert_eq!(
            in_queue(&it, &marks, now),
            want == ItemState::Open,
            "case {i}"
        );
    }
}

#[test]
fn ordering_is_by_activity_then_key() {
    let mut items = [
        item(ItemKey::thread(B).unwrap(), 10),
        item(ItemKey::channel(A).unwrap(), 10),
        item(ItemKey::thread(A).unwrap(), 20),
        item(ItemKey::thread(A).unwrap(), 5),
    ];
    items.sort_by(queue_order);
    let got: Vec<(Millis, String)> = items
        .iter()
        .map(|i| (i.last_activity_at, i.key.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            (20, format!("t_{A}")),
            (10, format!("c_{A}")),
            (10, format!("t_{B}")),
            (5, format!("t_{A}")),
        ]
    );
}

#[test]
fn channel_counts_use_read_counts() {
    let m = MemberCounts {
        msg_count: 7,
        msg_count_root: 4,
        mention_count: 2,
        mention_count_root: 1,
        urgent_mention_count: 1,
        last_viewed_at: 0,
    };
    // unread = total − read
    let c = channel_counts(ChannelType::Group, 10, 5, &m, false);
    assert_eq!((c.unread, c.mentions, c.urgent), (3, 2, 1));
    // CRT: roots only
    let c = channel_counts(ChannelType::Group, 10, 5, &m, true);
    assert_eq!((c.unread, c.mentions), (1, 1));
    // DM: every message from the other side is a mention
    let c = channel_counts(ChannelType::Direct, 10, 8, &m, true);
    assert_eq!((c.unread, c.mentions), (4, 4));
    // read count above total (stale channel row) never goes negative
    let c = channel_counts(ChannelType::Group, 1, 1, &m, true);
    assert_eq!(c.unread, 0);
}

#[test]
fn thread_item_rules() {
    let t = thread(true);
    let base = ThreadItemInputs {
        thread: Some(&t),
        is_member: true,
        root: Some(root()),
        mention: None,
    };
    let it = derive_thread_item(A, &base).unwrap();
    assert_eq!(it.kind, ItemKind::Thread);
    assert_eq!(it.last_activity_at, 2_000);
    assert_eq!(
        (it.counts.unread, it.counts.mentions, it.counts.urgent),
        (2, 1, 0)
    );
    assert_eq!(it.team_id, t.team_id);

    // urgent thread with unread replies
    let mut urgent = thread(true);
    urgent.is_urgent = true;
    let i = derive_thread_item(
        A,
        &ThreadItemInputs {
            thread: Some(&urgent),
            ..base.clone()
        },
    );
    assert_eq!(i.unwrap().counts.urgent, 1);

    // not followed, no mention: not an item
    let unf = thread(false);
    assert!(
        derive_thread_item(
            A,
            &ThreadItemInputs {
                thread: Some(&unf),
                ..base.clone()
            }
        )
        .is_none()
    );
    // deleted thread leaves the queue (thread delete_at or root delete_at)
    let mut del = thread(true);
    del.delete_at = 5;
    assert!(
        derive_thread_item(
            A,
            &ThreadItemInputs {
                thread: Some(&del),
                ..base.clone()
            }
        )
        .is_none()
    );
    let deleted_root = RootFacts {
        delete_at: 9,
        ..root()
    };
    assert!(
        derive_thread_item(
            A,
            &ThreadItemInputs {
                root: Some(deleted_root),
                ..base.clone()
            }
        )
        .is_none()
    );
    // removed from channel: gone
    assert!(
        derive_thread_item(
            A,
            &ThreadItemInputs {
                is_member: false,
                ..base.clone()
            }
        )
        .is_none()
    );
    // invalid id
    assert!(derive_thread_item("nope", &base).is_none());
    // followed thread without cached root uses last_reply_at
    let i = derive_thread_item(
        A,
        &ThreadItemInputs {
            root: None,
            ..base.clone()
        },
    )
    .unwrap();
    assert_eq!(i.last_activity_at, 2_000);
}

#[test]
fn mention_item_rules() {
    let m = ThreadItemInputs {
        thread: None,
        is_member: true,
        root: Some(root()),
        mention: Some((C, "")),
    };
    let it = derive_thread_item(A, &m).unwrap();
    assert_eq!(it.kind, ItemKind::Mention);
    assert_eq!(it.key, ItemKey::thread(A).unwrap());
    assert_eq!(it.last_activity_at, 1_000);
    assert_eq!((it.counts.unread, it.counts.mentions), (1, 1));
    // viewed channel after the post: read
    let viewed = RootFacts {
        channel_last_viewed_at: 1_000,
        ..root()
    };
    let it = derive_thread_item(
        A,
        &ThreadItemInputs {
            root: Some(viewed),
            ..m.clone()
        },
    )
    .unwrap();
    assert_eq!(it.counts.mentions, 0);
    // once someone replied, the mention item is gone (a thread takes over if followed)
    let replied = RootFacts {
        has_replies: true,
        ..root()
    };
    assert!(
        derive_thread_item(
            A,
            &ThreadItemInputs {
                root: Some(replied),
                ..m.clone()
            }
        )
        .is_none()
    );
    let mut t = thread(false);
    t.reply_count = 1;
    assert!(
        derive_thread_item(
            A,
            &ThreadItemInputs {
                thread: Some(&t),
                ..m.clone()
            }
        )
        .is_none()
    );
    let t = thread(true);
    let it = derive_thread_item(
        A,
        &ThreadItemInputs {
            thread: Some(&t),
            ..m.clone()
        },
    )
    .unwrap();
    assert_eq!(it.kind, ItemKind::Thread);
    // root not cached: cannot show it
    assert!(
        derive_thread_item(
            A,
            &ThreadItemInputs {
                root: None,
                ..m.clone()
            }
        )
        .is_none()
    );
    // not a member any more
    assert!(
        derive_thread_item(
            A,
            &ThreadItemInputs {
                is_member: false,
                ..m
            }
        )
        .is_none()
    );
}

fn dm(kind: ChannelType) -> ChannelFacts {
    ChannelFacts {
        channel_id: C.into(),
        channel_type: kind,
        team_id: String::new(),
        total_msg_count: 5,
        total_msg_count_root: 5,
        last_post_at: 3_000,
        delete_at: 0,
        member: Some(MemberCounts {
            msg_count: 3,
            msg_count_root: 3,
            ..MemberCounts::default()
        }),
    }
}

#[test]
fn channel_item_rules() {
    let it = derive_channel_item(&dm(ChannelType::Direct), true).unwrap();
    assert_eq!(it.kind, ItemKind::Direct);
    assert_eq!(it.key, ItemKey::channel(C).unwrap());
    assert_eq!((it.counts.unread, it.counts.mentions), (2, 2));
    let it = derive_channel_item(&dm(ChannelType::Group), true).unwrap();
    assert_eq!((it.kind, it.counts.mentions), (ItemKind::Group, 0));
    assert!(derive_channel_item(&dm(ChannelType::Open), true).is_none());
    assert!(derive_channel_item(&dm(ChannelType::Private), true).is_none());
    assert!(
        derive_channel_item(
            &ChannelFacts {
                member: None,
                ..dm(ChannelType::Direct)
            },
            true
        )
        .is_none()
    );
    assert!(
        derive_channel_item(
            &ChannelFacts {
                last_post_at: 0,
                ..dm(ChannelType::Direct)
            },
            true
        )
        .is_none()
    );
    assert!(
        derive_channel_item(
            &ChannelFacts {
                delete_at: 1,
                ..dm(ChannelType::Group)
            },
            true
        )
        .is_none()
    );
}

#[test]
fn filters() {
    let now = 1_000;
    let mut t = item(ItemKey::thread(A).unwrap(), 500);
    t.team_id = "x".into();
    t.counts.mentions = 1;
    let mut d = item(ItemKey::channel(B).unwrap(), 600);
    d.kind = ItemKind::Direct;
    let open = Marks::default();
    let done = Marks {
        done_at: Some(900),
        snoozed_until: None,
    };
    let snoozed = Marks {
        done_at: None,
        snoozed_until: Some(2_000),
    };
    assert!(Filter::All.matches(&t, &open, now));
    assert!(Filter::Mentions.matches(&t, &open, now));
    assert!(!Filter::Mentions.matches(&d, &open, now));
    assert!(Filter::Direct.matches(&d, &open, now));
    assert!(!Filter::Direct.matches(&t, &open, now));
    assert!(Filter::Threads.matches(&t, &open, now));
    assert!(Filter::Team("x".into()).matches(&t, &open, now));
    assert!(!Filter::Team("x".into()).matches(&d, &open, now));
    assert!(!Filter::All.matches(&t, &done, now));
    assert!(Filter::Done.matches(&t, &done, now));
    assert!(!Filter::All.matches(&t, &snoozed, now));
    assert!(Filter::Snoozed.matches(&t, &snoozed, now));
    assert!(!Filter::Snoozed.matches(&t, &open, now));
}

#[test]
fn preferences_round_trip_and_garbage() {
    let mut marks = BTreeMap::new();
    marks.insert(
        ItemKey::thread(A).unwrap(),
        Marks {
            done_at: Some(10),
            snoozed_until: Some(20),
        },
    );
    marks.insert(
        ItemKey::channel(B).unwrap(),
        Marks {
            done_at: Some(30),
            snoozed_until: None,
        },
    );
    let prefs = marks_to_preferences(U, &marks);
    assert_eq!(prefs.len(), 3);
    for p in &prefs {
        assert!(p.category.len() <= 32 && p.name.len() <= 32 && p.value.len() <= 2000);
        assert_eq!(p.user_id, U);
    }
    assert_eq!(preferences_to_marks(&prefs), marks);

    let pref = |c: &str, n: &str, v: &str| Preference {
        user_id: U.into(),
        category: c.into(),
        name: n.into(),
        value: v.into(),
    };
    let key = format!("t_{A}");
    let garbage = vec![
        pref(DONE_CATEGORY, &key, "abc"),
        pref(DONE_CATEGORY, &key, "-5"),
        pref(DONE_CATEGORY, &key, "0"),
        pref(DONE_CATEGORY, &key, "99999999999999999999999"),
        pref(DONE_CATEGORY, &key, ""),
        pref(DONE_CATEGORY, &key, " 5"),
        pref(DONE_CATEGORY, "t_bad", "5"),
        pref(SNOOZE_CATEGORY, "", "5"),
        pref("display_settings", &key, "5"),
    ];
    assert!(preferences_to_marks(&garbage).is_empty());
    // duplicates: later time wins regardless of order
    let dup = vec![
        pref(DONE_CATEGORY, &key, "7"),
        pref(DONE_CATEGORY, &key, "3"),
    ];
    assert_eq!(
        preferences_to_marks(&dup)[&ItemKey::thread(A).unwrap()].done_at,
        Some(7)
    );
    let p = mark_preference(U, &ItemKey::thread(A).unwrap(), MarkKind::Snooze, 42);
    assert_eq!(
        (p.category.as_str(), p.value.as_str()),
        (SNOOZE_CATEGORY, "42")
    );
}

fn arb_id() -> impl Strategy<Value = String> {
    "[a-z0-9]{26}"
}

fn arb_key() -> impl Strategy<Value = ItemKey> {
    (any::<bool>(), arb_id()).prop_map(|(t, id)| {
        if t {
            ItemKey::Thread(id)
        } else {
            ItemKey::Channel(id)
        }
    })
}

proptest! {
    #[test]
    fn prop_key_round_trip(k in arb_key()) {
        prop_assert_eq!(ItemKey::parse(&k.to_string()), Ok(k));
    }

    #[test]
    fn prop_parse_never_panics(s in ".{0,40}") {
        let _ = ItemKey::parse(&s);
    }

    #[test]
    fn prop_prefs_decode_never_panics(c in ".{0,40}", n in ".{0,40}", v in ".{0,40}") {
        let _ = preferences_to_marks(&[Preference { user_id: U.into(), category: c, name: n, value: v }]);
    }

    #[test]
    fn prop_marks_round_trip(entries in proptest::collection::btree_map(arb_key(), (proptest::option::of(1i64..i64::MAX), proptest::option::of(1i64..i64::MAX)), 0..20)) {
        let marks: BTreeMap<ItemKey, Marks> = entries
            .into_iter()
            .filter(|(_, (d, s))| d.is_some() || s.is_some())
            .map(|(k, (d, s))| (k, Marks { done_at: d, snoozed_until: s }))
            .collect();
        prop_assert_eq!(preferences_to_marks(&marks_to_preferences(U, &marks)), marks);
    }

    #[test]
    fn prop_order_is_total_and_consistent(mut v in proptest::collection::vec((arb_key(), 0i64..50), 0..30)) {
        let mut items: Vec<Item> = v.drain(..).map(|(k, at)| item(k, at)).collect();
        items.sort_by(queue_order);
        for w in items.windows(2) {
            prop_assert!(w[0].last_activity_at >= w[1].last_activity_at);
            if w[0].last_activity_at == w[1].last_activity_at {
                prop_assert!(w[0].key.to_string() <= w[1].key.to_string());
            }
        }
    }

    #[test]
    fn prop_done_then_new_activity_reopens(at in 0i64..1_000_000, done in 0i64..1_000_000, now in 0i64..1_000_000) {
        let marks = Marks { done_at: Some(done), snoozed_until: None };
        prop_assert_eq!(in_queue(&item(ItemKey::Thread(A.into()), at), &marks, now), at > done);
    }

    #[test]
    fn prop_exactly_one_filter_state(at in 0i64..100, done in proptest::option::of(0i64..100), snooze in proptest::option::of(0i64..100), now in 0i64..100) {
        let marks = Marks { done_at: done, snoozed_until: snooze };
        let it = item(ItemKey::Thread(A.into()), at);
        let n = [Filter::All, Filter::Snoozed, Filter::Done].iter().filter(|f| f.matches(&it, &marks, now)).count();
        prop_assert_eq!(n, 1);
    }

    #[test]
    fn prop_counts_never_negative(total in -5i64..1000, root in -5i64..1000, read in -5i64..1000, read_root in -5i64..1000, men in -5i64..100, crt in any::<bool>(), d in any::<bool>()) {
        let m = MemberCounts { msg_count: read, msg_count_root: read_root, mention_count: men, mention_count_root: men, urgent_mention_count: men, last_viewed_at: 0 };
        let ty = if d { ChannelType::Direct } else { ChannelType::Group };
        let c = channel_counts(ty, total, root, &m, crt);
        prop_assert!(c.unread >= 0 && c.mentions >= 0 && c.urgent >= 0);
        if d { prop_assert!(c.mentions >= c.unread); }
    }
}
