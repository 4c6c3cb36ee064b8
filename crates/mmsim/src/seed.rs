//! Deterministic organisations: `demo` (a believable company for people and UI tests) and
//! `large` (benchmarks: 50 teams, 2,000 channels, 10,000 followed threads, 300,000 posts).
//!
//! Ids, names, texts and the demo token come from the seed's RNG; timestamps are relative to
//! the wall clock at generation ("within the last ~10 days").

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::{self, Id, PostPriority};
use crate::oauth::{AppCredentials, AppSpec};
use crate::state::{
    ChannelRec, ChannelType, EmojiRec, FileBlob, FileRec, NewPost, ReactionRec, State,
    ThreadMemberRec, UserRec,
};

/// The demo / benchmark user.
pub const DEMO_USERNAME: &str = "alice";
/// Password of every seeded user (documented in the README).
pub const DEMO_PASSWORD: &str = "demo-password";
/// Name of the seeded, trusted, confidential OAuth app for ThreadDesk.
pub const THREADDESK_APP_NAME: &str = "ThreadDesk";
/// Callback URLs registered for it at seed time (the demo adds its exact URL at start).
pub const THREADDESK_CALLBACKS: [&str; 2] = [
    "http://localhost:8080/auth/oauth/callback",
    "http://127.0.0.1:8080/auth/oauth/callback",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Demo,
    Large,
}

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "demo" => Ok(Self::Demo),
            "large" => Ok(Self::Large),
            other => Err(format!("unknown size {other:?} (expected demo or large)")),
        }
    }
}

/// The seeded user scripts and people sign in as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoUser {
    pub id: String,
    pub username: String,
    pub password: String,
    /// A valid personal access token.
    pub token: String,
}

/// The demo user of a seeded state.
#[must_use]
pub fn demo_user(state: &State) -> Option<DemoUser> {
    let id = *state.usernames.get(DEMO_USERNAME)?;
    let token = state
        .pats
        .values()
        .find(|p| p.user_id == id && p.is_active)?
        .token
        .clone();
    Some(DemoUser {
        id: id.into(),
        username: DEMO_USERNAME.to_owned(),
        password: DEMO_PASSWORD.to_owned(),
        token,
    })
}

/// Credentials of the seeded ThreadDesk OAuth app.
#[must_use]
pub fn threaddesk_app(state: &State) -> Option<AppCredentials> {
    state
        .oauth_apps
        .values()
        .find(|a| a.name == THREADDESK_APP_NAME)
        .map(|a| AppCredentials {
            client_id: a.id.into(),
            client_secret: a.secret.clone(),
        })
}

#[must_use]
pub fn generate(seed: u64, size: Size) -> State {
    let mut s = Seeder::new(seed);
    s.common();
    match size {
        Size::Demo => s.demo(),
        Size::Large => s.large(),
    }
    s.finish()
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

struct Seeder {
    st: State,
    rng: StdRng,
    now: i64,
    alice: Id,
}

impl Seeder {
    fn new(seed: u64) -> Self {
        let mut st = State::default();
        st.id_rng = Some(StdRng::seed_from_u64(seed ^ 0x6d6d_7369_6d00));
        let now = st.now();
        Self {
            st,
            rng: StdRng::seed_from_u64(seed),
            now,
            alice: Id::random(),
        }
    }

    /// Things every size has: the demo user with a token, an admin, the OAuth app, emoji.
    fn common(&mut self) {
        self.alice = self.user("alice", "Alice", "Martin", "Engineering Manager");
        let token = self.st.new_id().to_string();
        let token_id = self.st.new_id();
        self.st
            .add_pat(token_id, token, self.alice, "mmsim demo token");
        let admin = self.user("admin", "Sam", "Admin", "IT Administrator");
        if let Some(u) = self.st.users.get_mut(&admin) {
            u.roles = "system_admin system_user".to_owned();
        }
        self.st.register_oauth_app(
            AppSpec {
                name: THREADDESK_APP_NAME.to_owned(),
                callback_urls: THREADDESK_CALLBACKS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                homepage: "https://github.com/threaddesk/threaddesk".to_owned(),
                is_trusted: true,
                is_public: false,
            },
            Some(admin),
        );
        for name in ["partyparrot", "shipit", "lgtm", "this-is-fine"] {
            let id = self.st.new_id();
            let at = self.now - 30 * DAY;
            self.st.emoji.push(EmojiRec {
                id,
                name: name.to_owned(),
                creator_id: admin,
                create_at: at,
            });
        }
    }

    fn user(&mut self, username: &str, first: &str, last: &str, position: &str) -> Id {
        let id = self.st.new_id();
        let at = self.now - 90 * DAY;
        self.st.add_user(UserRec {
            id,
            username: username.to_owned(),
            email: format!("{username}@example.com"),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            nickname: String::new(),
            position: position.to_owned(),
            roles: "system_user".to_owned(),
            password: DEMO_PASSWORD.to_owned(),
            create_at: at,
            update_at: at,
            last_picture_update: 0,
            timezone: "Europe/Berlin".to_owned(),
            is_bot: false,
        });
        let status = ["online", "away", "online", "dnd", "offline"][self.rng.random_range(0..5)];
        self.st.set_status(id, status);
        id
    }

    fn team(&mut self, name: &str, display: &str, description: &str, members: &[Id]) -> Id {
        let id = self.st.new_id();
        let invite_id = self.st.new_id();
        self.st.teams.insert(
            id,
            crate::state::TeamRec {
                id,
                name: name.to_owned(),
                display_name: display.to_owned(),
                description: description.to_owned(),
                create_at: self.now - 120 * DAY,
                invite_id,
            },
        );
        for (i, u) in members.iter().enumerate() {
            self.st.add_team_member(id, *u, i == 0);
        }
        id
    }

    fn channel(
        &mut self,
        team: Id,
        kind: ChannelType,
        name: &str,
        display: &str,
        purpose: &str,
        members: &[Id],
    ) -> Id {
        let id = self.st.new_id();
        let at = self.now - 100 * DAY;
        self.st.add_channel(ChannelRec {
            id,
            team_id: Some(team),
            kind,
            name: name.to_owned(),
            display_name: display.to_owned(),
            header: String::new(),
            purpose: purpose.to_owned(),
            creator_id: members.first().copied(),
            create_at: at,
            update_at: at,
            delete_at: 0,
            last_post_at: at,
            last_root_post_at: at,
            total_msg_count: 0,
            total_msg_count_root: 0,
        });
        for u in members {
            self.st.add_member_quiet(id, *u);
        }
        id
    }

    fn post_at(&mut self, author: Id, channel: Id, root: Option<Id>, at: i64, msg: &str) -> Id {
        let np = NewPost {
            root_id: root,
            create_at: Some(at),
            ..NewPost::new(channel, msg)
        };
        self.st
            .create_post(author, np)
            .unwrap_or_else(|_| Id::random())
    }

    fn finish(mut self) -> State {
        self.st.take_outbox();
        self.st.pending_posts.clear();
        self.st.id_rng = None;
        self.st
    }

    // ------------------------------------------------------------------------------------
    // demo
    // ------------------------------------------------------------------------------------

    fn demo(&mut self) {
        let a = self.alice;
        let bob = self.user("bob", "Bob", "Chen", "Backend Engineer");
        let carol = self.user("carol", "Carol", "Diaz", "Product Designer");
        let dave = self.user("dave", "Dave", "Okafor", "Site Reliability Engineer");
        let erin = self.user("erin", "Erin", "Walsh", "Product Manager");
        let frank = self.user("frank", "Frank", "Müller", "Frontend Engineer");
        let grace = self.user("grace", "Grace", "Kim", "QA Lead");
        let heidi = self.user("heidi", "Heidi", "Larsen", "Data Engineer");
        let ivan = self.user("ivan", "Ivan", "Petrov", "Security Engineer");
        let judy = self.user("judy", "Judy", "Nakamura", "Support Lead");
        let mallory = self.user("mallory", "Mallory", "Price", "Sales Engineer");
        let oscar = self.user("oscar", "Oscar", "Silva", "CTO");
        let peggy = self.user("peggy", "Peggy", "Brown", "Marketing Lead");
        let everyone = [
            a, bob, carol, dave, erin, frank, grace, heidi, ivan, judy, mallory, oscar, peggy,
        ];
        let eng = [a, bob, dave, frank, grace, heidi, ivan, oscar];
        let product = [erin, a, carol, frank, oscar, peggy];
        let cs = [judy, a, mallory, grace, erin];

        let company = self.team("company", "Acme Corp", "Everyone at Acme", &everyone);
        let engineering = self.team("engineering", "Engineering", "Builders of things", &eng);
        let product_t = self.team("product", "Product", "What we build and why", &product);
        let success = self.team(
            "customer-success",
            "Customer Success",
            "Keeping customers happy",
            &cs,
        );

        use ChannelType::{Open, Private};
        let town = self.channel(
            company,
            Open,
            "town-square",
            "Town Square",
            "Company-wide chatter",
            &everyone,
        );
        let random = self.channel(
            company,
            Open,
            "off-topic",
            "Off-Topic",
            "Cats, coffee and weekend plans",
            &everyone,
        );
        let announcements = self.channel(
            company,
            Open,
            "announcements",
            "Announcements",
            "Important company news",
            &everyone,
        );
        let eng_town = self.channel(engineering, Open, "town-square", "Town Square", "", &eng);
        let backend = self.channel(
            engineering,
            Open,
            "backend",
            "Backend",
            "APIs, databases and queues",
            &[bob, a, dave, heidi, ivan, oscar],
        );
        let frontend = self.channel(
            engineering,
            Open,
            "frontend",
            "Frontend",
            "Web and desktop clients",
            &[frank, a, carol, grace],
        );
        let incidents = self.channel(
            engineering,
            Open,
            "incidents",
            "Incidents",
            "Production incidents — keep it factual",
            &[dave, a, bob, ivan, oscar, heidi],
        );
        let releases = self.channel(
            engineering,
            Open,
            "releases",
            "Releases",
            "Release trains and checklists",
            &[grace, a, bob, frank, dave],
        );
        let security = self.channel(
            engineering,
            Private,
            "security",
            "Security",
            "Private: vulnerabilities and audits",
            &[ivan, a, oscar, dave],
        );
        let code_review = self.channel(
            engineering,
            Open,
            "code-review",
            "Code Review",
            "Ask for reviews here",
            &[bob, a, frank, heidi, grace],
        );
        let prod_town = self.channel(product_t, Open, "town-square", "Town Square", "", &product);
        let roadmap = self.channel(
            product_t,
            Open,
            "roadmap",
            "Roadmap",
            "Quarterly planning",
            &[erin, a, oscar, carol, peggy],
        );
        let design = self.channel(
            product_t,
            Open,
            "design",
            "Design",
            "Mockups and design reviews",
            &[carol, a, frank, erin],
        );
        let leadership = self.channel(
            product_t,
            Private,
            "leadership",
            "Leadership",
            "Private leadership sync",
            &[oscar, a, erin],
        );
        let cs_town = self.channel(success, Open, "town-square", "Town Square", "", &cs);
        let escalations = self.channel(
            success,
            Open,
            "support-escalations",
            "Support Escalations",
            "Tickets that need engineering",
            &[judy, a, mallory, grace],
        );
        let feedback = self.channel(
            success,
            Open,
            "customer-feedback",
            "Customer Feedback",
            "What customers tell us",
            &[judy, mallory, erin, a],
        );

        let dm_bob = self
            .st
            .direct_channel(a, bob)
            .unwrap_or_else(|_| Id::random());
        let dm_carol = self
            .st
            .direct_channel(a, carol)
            .unwrap_or_else(|_| Id::random());
        let dm_dave = self
            .st
            .direct_channel(a, dave)
            .unwrap_or_else(|_| Id::random());
        let dm_oscar = self
            .st
            .direct_channel(a, oscar)
            .unwrap_or_else(|_| Id::random());
        let gm_oncall = self
            .st
            .group_channel(a, &[bob, dave])
            .unwrap_or_else(|_| Id::random());
        let gm_launch = self
            .st
            .group_channel(a, &[carol, erin, frank])
            .unwrap_or_else(|_| Id::random());

        let n = self.now;
        let ago = |d: i64, h: i64, m: i64| n - d * DAY - h * HOUR - m * MINUTE;

        // announcements, town square, off-topic
        let welcome = self.post_at(oscar, announcements, None, ago(9, 3, 0),
            "**Welcome to Q3!** :tada:\n\nA few things for this quarter:\n\n1. Ship the new *threads inbox*\n2. Cut p99 API latency by **30%**\n3. Hire two more SREs\n\nFull plan: [Q3 planning doc](https://wiki.example.com/q3-plan)");
        self.post_at(peggy, announcements, None, ago(6, 5, 0), "The new website goes live on **Thursday**. Please share the launch post with your networks!");
        let offsite = self.post_at(erin, town, None, ago(8, 2, 0), "Who is joining the offsite in Lisbon? Please add yourself to the list by Friday :airplane:");
        self.post_at(judy, town, Some(offsite), ago(8, 1, 40), "Count me in!");
        self.post_at(
            frank,
            town,
            Some(offsite),
            ago(8, 1, 10),
            "Me too — can we do the walking tour again?",
        );
        self.post_at(
            a,
            town,
            Some(offsite),
            ago(7, 22, 0),
            "I'll be there. @erin do we need to book our own flights?",
        );
        self.post_at(
            erin,
            town,
            Some(offsite),
            ago(7, 20, 0),
            "@alice yes, book your own and expense them. Hotel is covered.",
        );
        let coffee = self.post_at(
            heidi,
            random,
            None,
            ago(5, 4, 0),
            "The new espresso machine on the 3rd floor is *excellent*. That is all.",
        );
        self.post_at(
            dave,
            random,
            Some(coffee),
            ago(5, 3, 30),
            "Confirmed. Productivity up 12% (n=1)",
        );
        self.post_at(
            mallory,
            random,
            None,
            ago(2, 6, 0),
            "Anyone up for a board game night next week? :game_die:",
        );

        // backend: a long technical thread mentioning alice
        let pool = self.post_at(bob, backend, None, ago(4, 6, 0),
            "We keep hitting connection pool exhaustion on `api-7` under load. Current settings:\n\n```toml\n[database]\nmax_connections = 20\nidle_timeout = \"10m\"\nacquire_timeout = \"5s\"\n```\n\n@alice can we get time this sprint to fix it properly?");
        self.post_at(
            dave,
            backend,
            Some(pool),
            ago(4, 5, 30),
            "Seeing the same on the dashboards. The spikes line up with the nightly export job.",
        );
        self.post_at(heidi, backend, Some(pool), ago(4, 5, 0), "That export holds a transaction open for the whole run :grimacing: I can split it into batches.");
        self.post_at(a, backend, Some(pool), ago(4, 3, 0), "Yes, let's do it. @heidi please batch the export, @bob bump the pool to 50 as a stopgap.");
        self.post_at(bob, backend, Some(pool), ago(1, 2, 0), "Pool bumped in staging. Load test looks good so far:\n\n| metric | before | after |\n|---|---|---|\n| p50 | 41 ms | 38 ms |\n| p99 | 1.9 s | 240 ms |\n| errors | 2.1% | 0.0% |");
        self.post_at(heidi, backend, Some(pool), ago(0, 3, 0), "Batched export is in review: https://git.example.com/acme/api/pull/1423 — @alice could you take a look?");
        let migrations = self.post_at(ivan, backend, None, ago(3, 2, 0), "Reminder: migrations must be **backwards compatible** for one release. No column drops in the same deploy as the code change.");
        self.post_at(
            bob,
            backend,
            Some(migrations),
            ago(3, 1, 0),
            "+1, bit us last month.",
        );
        self.post_at(
            oscar,
            backend,
            None,
            ago(1, 5, 0),
            "Great work on the latency numbers, everyone. :rocket:",
        );

        // incidents: an urgent thread
        let incident = self.post_at_priority(dave, incidents, ago(0, 5, 0), "urgent",
            ":rotating_light: **SEV-2**: elevated 5xx on checkout in `eu-west-1`.\n\n- Started 09:12 UTC\n- Impact: ~4% of checkout requests\n- Suspect: the 09:05 deploy\n\n@alice @bob please join the bridge.");
        self.post_at(
            bob,
            incidents,
            Some(incident),
            ago(0, 4, 50),
            "Rolling back the 09:05 deploy now.",
        );
        self.post_at(
            dave,
            incidents,
            Some(incident),
            ago(0, 4, 30),
            "Rollback done, error rate back to baseline. Keeping the incident open for 30 min.",
        );
        self.post_at(
            ivan,
            incidents,
            Some(incident),
            ago(0, 4, 0),
            "No sign of anything security-related in the WAF logs.",
        );
        self.post_at(
            dave,
            incidents,
            Some(incident),
            ago(0, 1, 0),
            "Resolved. @alice I'll write the postmortem by Wednesday — can you review?",
        );
        let old_incident = self.post_at(
            heidi,
            incidents,
            None,
            ago(6, 1, 0),
            "Minor: the analytics pipeline was 2 h behind this morning, now caught up.",
        );
        self.post_at(
            a,
            incidents,
            Some(old_incident),
            ago(6, 0, 30),
            "Thanks Heidi. Do we know why?",
        );
        self.post_at(
            heidi,
            incidents,
            Some(old_incident),
            ago(6, 0, 10),
            "A stuck Kafka consumer; restarted it and added an alert.",
        );

        // releases
        let release = self.post_at(grace, releases, None, ago(2, 4, 0),
            "Release **2.14** checklist:\n\n- [x] Changelog\n- [x] Migration dry run\n- [ ] Smoke tests on staging\n- [ ] Sign-off from @alice");
        self.post_at(
            frank,
            releases,
            Some(release),
            ago(2, 3, 0),
            "Smoke tests on staging are green :white_check_mark:",
        );
        self.post_at(
            grace,
            releases,
            Some(release),
            ago(0, 6, 0),
            "@alice everything is ready except your sign-off.",
        );

        // security (private)
        let cve = self.post_at(ivan, security, None, ago(3, 7, 0), "Heads-up: CVE-2024-XXXX affects our image processing library. Patch is available; I'd like to roll it out this week.");
        self.post_at(
            oscar,
            security,
            Some(cve),
            ago(3, 6, 0),
            "Agreed. @alice can your team take it?",
        );
        self.post_at(
            a,
            security,
            Some(cve),
            ago(3, 5, 0),
            "Yes, @dave will pick it up tomorrow.",
        );
        self.post_at(
            dave,
            security,
            Some(cve),
            ago(2, 2, 0),
            "Patched and deployed to all regions.",
        );

        // code review
        let review = self.post_at(frank, code_review, None, ago(1, 7, 0),
            "Could someone review the new keyboard shortcuts? Core of it:\n\n```rust\nmatch key {\n    'j' => select_next(),\n    'k' => select_previous(),\n    'e' => mark_done(),\n    _ => {}\n}\n```");
        self.post_at(
            bob,
            code_review,
            Some(review),
            ago(1, 6, 0),
            "LGTM, one nit about the `e` binding clashing with the editor. :lgtm:",
        );
        self.post_at(
            heidi,
            code_review,
            None,
            ago(0, 2, 0),
            "PR for the batched export is up, small one (+120/−40). @alice @bob",
        );
        let a11y = self.post_at(
            grace,
            frontend,
            None,
            ago(1, 1, 0),
            "Accessibility audit found 3 issues in the sidebar (contrast, focus ring, aria-labels). Filing tickets.",
        );
        self.post_at(
            frank,
            frontend,
            Some(a11y),
            ago(0, 5, 0),
            "Focus ring fix is up. @alice do we want this in 2.14 or 2.15?",
        );
        self.post_at(
            erin,
            feedback,
            None,
            ago(0, 10, 0),
            "Three customers asked for a *Done* button on threads this week. @judy can you collect the ticket links?",
        );

        // product
        let q4 = self.post_at(erin, roadmap, None, ago(5, 6, 0),
            "Draft Q4 roadmap themes:\n\n1. **Inbox zero** for power users\n2. Mobile parity\n3. Enterprise SSO\n\nComments welcome before Friday.");
        self.post_at(
            oscar,
            roadmap,
            Some(q4),
            ago(5, 4, 0),
            "I'd swap 2 and 3 — two large deals are blocked on SSO.",
        );
        self.post_at(
            carol,
            roadmap,
            Some(q4),
            ago(5, 3, 0),
            "From the design side, inbox zero needs ~3 weeks of research first.",
        );
        self.post_at(
            a,
            roadmap,
            Some(q4),
            ago(4, 23, 0),
            "Engineering can staff SSO in October if we pause the mobile rewrite.",
        );
        self.post_at(
            erin,
            roadmap,
            Some(q4),
            ago(0, 8, 0),
            "Updated the draft with everyone's input. @alice @oscar please take a final look.",
        );
        let mockups = self.post_at(
            carol,
            design,
            None,
            ago(2, 5, 0),
            "New inbox mockups are ready for feedback :art: (see attached)",
        );
        self.attach_image(
            carol,
            mockups,
            "inbox-mockup.png",
            1440,
            900,
            [90, 120, 200],
        );
        self.post_at(
            frank,
            design,
            Some(mockups),
            ago(2, 4, 0),
            "Love the density. Can we keep the unread dot on the left?",
        );
        self.post_at(
            erin,
            design,
            Some(mockups),
            ago(1, 22, 0),
            "Looks great. @alice does the keyboard flow match what engineering planned?",
        );
        let arch = self.post_at(
            a,
            design,
            None,
            ago(3, 3, 0),
            "Architecture sketch for the sync engine, for context.",
        );
        self.attach_image(a, arch, "sync-architecture.png", 1200, 800, [200, 140, 80]);
        let budget = self.post_at(
            oscar,
            leadership,
            None,
            ago(4, 2, 0),
            "Headcount for next year is approved: +2 engineering, +1 design.",
        );
        self.post_at(
            erin,
            leadership,
            Some(budget),
            ago(4, 1, 0),
            "Great news. I'll update the hiring plan.",
        );
        self.post_at(
            oscar,
            leadership,
            Some(budget),
            ago(0, 9, 0),
            "@alice please send me the job descriptions for the two engineering roles.",
        );

        // customer success
        let esc = self.post_at(judy, escalations, None, ago(1, 9, 0),
            "Customer **Globex** reports exports timing out for large workspaces (ticket #8812). Logs attached. @alice who on engineering can help?");
        self.attach_file(
            judy,
            esc,
            "globex-export-logs.txt",
            "text/plain",
            b"2024-06-01T09:12:03Z ERROR export timed out after 300s workspace=globex\n".to_vec(),
        );
        self.post_at(
            a,
            escalations,
            Some(esc),
            ago(1, 8, 0),
            "@heidi's batching fix should solve this — it ships with 2.14.",
        );
        self.post_at(
            judy,
            escalations,
            Some(esc),
            ago(1, 7, 30),
            "Thanks, I'll let them know.",
        );
        let report = self.post_at(
            mallory,
            feedback,
            None,
            ago(3, 4, 0),
            "Quarterly customer feedback report attached. Top ask: better notifications.",
        );
        self.attach_file(
            mallory,
            report,
            "feedback-q2.pdf",
            "application/pdf",
            minimal_pdf(),
        );
        self.post_at(
            judy,
            cs_town,
            None,
            ago(7, 3, 0),
            "Support rota for next week is in the calendar.",
        );
        self.post_at(
            frank,
            eng_town,
            None,
            ago(6, 4, 0),
            "Engineering all-hands moved to Thursday 15:00.",
        );
        self.post_at(
            erin,
            prod_town,
            None,
            ago(5, 2, 0),
            "Customer interview notes are in the shared drive.",
        );

        // DMs and GMs
        self.post_at(
            bob,
            dm_bob,
            None,
            ago(1, 3, 0),
            "Hey, do you have 10 minutes for the pool sizing question?",
        );
        self.post_at(a, dm_bob, None, ago(1, 2, 50), "Sure, call in 5?");
        let dm_thread = self.post_at(
            bob,
            dm_bob,
            None,
            ago(0, 2, 30),
            "Also: I'd like to take Friday off — OK?",
        );
        self.post_at(
            a,
            dm_bob,
            Some(dm_thread),
            ago(0, 2, 0),
            "Of course, enjoy!",
        );
        self.post_at(
            bob,
            dm_bob,
            Some(dm_thread),
            ago(0, 0, 40),
            "Thanks! I'll hand over the on-call pager to Dave.",
        );
        self.post_at(
            carol,
            dm_carol,
            None,
            ago(0, 4, 0),
            "Could you join the design review tomorrow at 11?",
        );
        self.post_at(
            dave,
            dm_dave,
            None,
            ago(3, 1, 0),
            "Postmortem template: https://wiki.example.com/postmortem-template",
        );
        self.post_at(
            oscar,
            dm_oscar,
            None,
            ago(0, 7, 0),
            "Let's sync on the Q4 roadmap before Friday.",
        );
        let oncall = self.post_at(
            dave,
            gm_oncall,
            None,
            ago(2, 1, 0),
            "On-call handover: nothing open, two noisy alerts silenced.",
        );
        self.post_at(
            bob,
            gm_oncall,
            Some(oncall),
            ago(2, 0, 30),
            "Thanks. Which alerts?",
        );
        self.post_at(
            dave,
            gm_oncall,
            Some(oncall),
            ago(0, 3, 0),
            "`disk-usage-warn` on the log hosts, ticket filed. @alice FYI.",
        );
        self.post_at(erin, gm_launch, None, ago(1, 4, 0), "Launch checklist for the new inbox is in the doc. @alice @carol @frank please review your parts.");

        // reactions, edits, a deleted post
        self.react(
            welcome,
            &[
                (bob, "tada"),
                (carol, "tada"),
                (dave, "+1"),
                (frank, "partyparrot"),
            ],
            30,
        );
        self.react(pool, &[(dave, "+1"), (oscar, "eyes")], 20);
        self.react(incident, &[(a, "eyes"), (oscar, "pray")], 5);
        self.react(mockups, &[(a, "heart_eyes"), (frank, "+1")], 60);
        self.react(review, &[(bob, "lgtm"), (a, "shipit")], 45);
        self.react(release, &[(frank, "white_check_mark")], 30);
        self.edit(release, "Release **2.14** checklist:\n\n- [x] Changelog\n- [x] Migration dry run\n- [x] Smoke tests on staging\n- [ ] Sign-off from @alice");
        self.edit(
            coffee,
            "The new espresso machine on the 3rd floor is *excellent*. That is all. :coffee:",
        );
        let oops = self.post_at(
            peggy,
            announcements,
            None,
            ago(6, 4, 50),
            "Website launch moved to Friday (wrong channel, sorry)",
        );
        self.delete(oops);

        // Preferences of the demo user: CRT on, one saved post.
        let prefs = self.st.preferences.entry(a).or_default();
        prefs.insert(
            ("display_settings".into(), "collapsed_reply_threads".into()),
            "on".into(),
        );
        prefs.insert(("flagged_post".into(), pool.to_string()), "true".into());

        // Read state: alice read everything up to a day ago in a few busy channels (so they show
        // unread), everything elsewhere; threads were last read ~20 h ago.
        let partly_read = [
            backend,
            incidents,
            releases,
            roadmap,
            design,
            escalations,
            dm_bob,
            dm_carol,
            dm_oscar,
            gm_oncall,
            gm_launch,
            leadership,
            code_review,
            frontend,
            feedback,
        ];
        self.normalise_read_state(&partly_read, n - 20 * HOUR);
    }

    fn post_at_priority(
        &mut self,
        author: Id,
        channel: Id,
        at: i64,
        priority: &str,
        msg: &str,
    ) -> Id {
        let np = NewPost {
            create_at: Some(at),
            priority: Some(PostPriority {
                priority: priority.to_owned(),
                requested_ack: Some(false),
                persistent_notifications: Some(false),
            }),
            ..NewPost::new(channel, msg)
        };
        self.st
            .create_post(author, np)
            .unwrap_or_else(|_| Id::random())
    }

    #[allow(clippy::too_many_arguments)]
    fn attach(
        &mut self,
        uploader: Id,
        post: Id,
        name: &str,
        mime: &str,
        size: i64,
        dims: (u32, u32),
        blob: FileBlob,
    ) {
        let Some(&idx) = self.st.post_index.get(&post) else {
            return;
        };
        let (channel, at) = {
            let p = &self.st.posts[idx as usize];
            (p.channel_id, p.create_at)
        };
        let id = self.st.new_id();
        let extension = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_owned())
            .unwrap_or_default();
        let is_image = mime.starts_with("image/");
        let info = model::FileInfo {
            id,
            user_id: uploader,
            post_id: post.into(),
            channel_id: channel,
            create_at: at,
            update_at: at,
            delete_at: 0,
            name: name.to_owned(),
            extension,
            size,
            mime_type: mime.to_owned(),
            width: dims.0,
            height: dims.1,
            has_preview_image: is_image,
            mini_preview: None,
            remote_id: None,
            archived: false,
        };
        self.st.files.insert(id, FileRec { info, blob });
        if let Some(p) = self.st.posts.get_mut(idx as usize) {
            p.extra.get_or_insert_default().file_ids.push(id);
        }
    }

    fn attach_image(&mut self, uploader: Id, post: Id, name: &str, w: u32, h: u32, color: [u8; 3]) {
        let size = i64::from(w) * i64::from(h) * 3 / 10;
        self.attach(
            uploader,
            post,
            name,
            "image/png",
            size,
            (w, h),
            FileBlob::Png { color },
        );
    }

    fn attach_file(&mut self, uploader: Id, post: Id, name: &str, mime: &str, bytes: Vec<u8>) {
        let size = i64::try_from(bytes.len()).unwrap_or(0);
        self.attach(
            uploader,
            post,
            name,
            mime,
            size,
            (0, 0),
            FileBlob::Bytes(Arc::from(bytes)),
        );
    }

    fn react(&mut self, post: Id, reactions: &[(Id, &str)], minutes_after: i64) {
        let Some(&idx) = self.st.post_index.get(&post) else {
            return;
        };
        let p = &mut self.st.posts[idx as usize];
        let at = p.create_at + minutes_after * MINUTE;
        let extra = p.extra.get_or_insert_default();
        for (user, emoji) in reactions {
            extra.reactions.push(ReactionRec {
                user_id: *user,
                emoji_name: (*emoji).to_owned(),
                create_at: at,
            });
        }
        p.update_at = p.update_at.max(at);
    }

    fn edit(&mut self, post: Id, message: &str) {
        if let Some(&idx) = self.st.post_index.get(&post) {
            let p = &mut self.st.posts[idx as usize];
            p.message = message.into();
            p.edit_at = p.create_at + 7 * MINUTE;
            p.update_at = p.update_at.max(p.edit_at);
        }
    }

    fn delete(&mut self, post: Id) {
        if let Some(&idx) = self.st.post_index.get(&post) {
            let p = &mut self.st.posts[idx as usize];
            p.delete_at = p.create_at + 2 * MINUTE;
            p.update_at = p.delete_at;
        }
    }

    /// Everybody has read everything, except the demo user in `partly_read` channels (read
    /// up to `cutoff`) and in followed threads (read up to `cutoff`).
    fn normalise_read_state(&mut self, partly_read: &[Id], cutoff: i64) {
        // Threads first: their read points move channel mention counters, which the channel
        // read points below then recompute from scratch (mentions in replies included).
        let threads: Vec<(Id, u32)> = self.st.thread_members.keys().copied().collect();
        for (user, root) in threads {
            let ts = if user == self.alice { cutoff } else { self.now };
            self.st.set_thread_view(user, root, ts);
        }
        let members: Vec<(Id, Id)> = self.st.members.keys().copied().collect();
        for (channel, user) in members {
            let ts = if user == self.alice && partly_read.contains(&channel) {
                cutoff
            } else {
                self.now
            };
            self.st.set_read_point(user, channel, ts, false);
        }
    }

    // ------------------------------------------------------------------------------------
    // large
    // ------------------------------------------------------------------------------------

    /// 50 teams × 40 channels, 200 other users, 150 posts per channel (100 roots, 10 threads
    /// of 5 replies), the benchmark user (`alice`) in every channel, following 5 threads per
    /// channel (10,000). Inserted directly (no events, no mention parsing) to stay fast.
    fn large(&mut self) {
        const TEAMS: usize = 50;
        const CHANNELS_PER_TEAM: usize = 40;
        const USERS: usize = 200;
        const ROOTS: usize = 100;
        const THREADS: usize = 10;
        const REPLIES: usize = 5;
        const FOLLOWED: usize = 5;
        let users: Vec<Id> = (0..USERS)
            .map(|i| {
                let first = FIRST_NAMES[i % FIRST_NAMES.len()];
                let last = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
                self.user(&format!("user{i:03}"), first, last, "Engineer")
            })
            .collect();
        let span = 10 * DAY;
        for t in 0..TEAMS {
            let team_users: Vec<Id> = std::iter::once(self.alice)
                .chain((0..20).map(|k| users[(t * 7 + k * 3) % USERS]))
                .collect();
            let team = self.team(
                &format!("team-{t:02}"),
                &format!("Team {t:02}"),
                "",
                &team_users,
            );
            for c in 0..CHANNELS_PER_TEAM {
                let members: Vec<Id> = std::iter::once(self.alice)
                    .chain((0..8).map(|k| team_users[1 + (c + k * 2) % 20]))
                    .collect();
                let kind = if c % 10 == 9 {
                    ChannelType::Private
                } else {
                    ChannelType::Open
                };
                let channel = self.channel(
                    team,
                    kind,
                    &format!("channel-{c:02}"),
                    &format!("Channel {t:02}-{c:02}"),
                    "",
                    &members,
                );
                self.large_channel(channel, &members, span, ROOTS, THREADS, REPLIES, FOLLOWED);
            }
        }
        for (k, u) in users.iter().take(20).enumerate() {
            let Ok(dm) = self.st.direct_channel(self.alice, *u) else {
                continue;
            };
            self.large_channel(dm, &[self.alice, *u], span, 20, 2, 3, 1 + k % 2);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn large_channel(
        &mut self,
        channel: Id,
        members: &[Id],
        span: i64,
        roots: usize,
        threads: usize,
        replies: usize,
        followed: usize,
    ) {
        let alice = self.alice;
        let mut root_idx = Vec::with_capacity(threads);
        for r in 0..roots {
            let at = self.now - span + self.rng.random_range(0..span - DAY);
            let author = members[self.rng.random_range(0..members.len())];
            let msg = SENTENCES[self.rng.random_range(0..SENTENCES.len())];
            let id = self.st.new_id();
            let np = NewPost::new(channel, msg);
            let idx = self.st.insert_post(id, author, &np, None, at);
            if r < threads {
                root_idx.push((idx, at));
            }
        }
        for (t, (root, at)) in root_idx.into_iter().enumerate() {
            let mut last = at;
            for _ in 0..replies {
                last += self.rng.random_range(MINUTE..(DAY / 4));
                let last_at = last.min(self.now - MINUTE);
                let author = members[self.rng.random_range(0..members.len())];
                let msg = SENTENCES[self.rng.random_range(0..SENTENCES.len())];
                let id = self.st.new_id();
                let np = NewPost::new(channel, msg);
                self.st.insert_post(id, author, &np, Some(root), last_at);
            }
            if t < followed {
                let unread = self.rng.random_bool(0.3);
                let view = if unread { at } else { self.now };
                self.st.user_threads.entry(alice).or_default().push(root);
                self.st.thread_members.insert(
                    (alice, root),
                    ThreadMemberRec {
                        following: true,
                        last_view_at: view,
                        unread_mentions: i64::from(unread && self.rng.random_bool(0.3)),
                        last_update_at: view,
                    },
                );
            }
        }
        let unread_channel = self.rng.random_bool(0.2);
        for m in members {
            let ts = if *m == alice && unread_channel {
                self.now - DAY
            } else {
                self.now
            };
            self.large_read_point(channel, *m, ts);
        }
    }

    /// Like `set_read_point` without mention parsing (the large seed has no mentions).
    fn large_read_point(&mut self, channel: Id, user: Id, ts: i64) {
        let (mut all, mut roots) = (0, 0);
        for &i in self.st.channel_posts.get(&channel).into_iter().flatten() {
            let p = &self.st.posts[i as usize];
            if p.create_at <= ts {
                all += 1;
                roots += i64::from(p.root.is_none());
            }
        }
        if let Some(m) = self.st.members.get_mut(&(channel, user)) {
            m.msg_count = all;
            m.msg_count_root = roots;
            m.last_viewed_at = ts;
            m.last_update_at = ts;
        }
    }
}

/// Username of the user who talks to every scale user (see [`add_scale_users`]).
pub const SCALE_BOT: &str = "scalebot";

/// A user added by [`add_scale_users`], with a valid personal access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleUser {
    pub id: String,
    pub username: String,
    pub token: String,
}

/// Add `n` light users for concurrency benchmarks (`scale00000`, …; additive, callable again to
/// add more). Each has a personal access token, a DM with [`SCALE_BOT`] holding 3 posts (the
/// last unread), and membership of a 50-user channel in team `scale` with one followed thread
/// (root + 2 replies). No WebSocket events are published.
pub fn add_scale_users(st: &mut State, n: usize) -> Vec<ScaleUser> {
    const GROUP: usize = 50;
    let now = st.now();
    let user_rec = |id: Id, username: &str, at: i64| UserRec {
        id,
        username: username.to_owned(),
        email: format!("{username}@example.com"),
        first_name: "Scale".to_owned(),
        last_name: username.to_owned(),
        nickname: String::new(),
        position: String::new(),
        roles: "system_user".to_owned(),
        password: DEMO_PASSWORD.to_owned(),
        create_at: at,
        update_at: at,
        last_picture_update: 0,
        timezone: "UTC".to_owned(),
        is_bot: false,
    };
    let bot = if let Some(id) = st.usernames.get(SCALE_BOT) {
        *id
    } else {
        let id = st.new_id();
        st.add_user(user_rec(id, SCALE_BOT, now - 30 * DAY));
        id
    };
    let team = if let Some(t) = st.teams.values().find(|t| t.name == "scale") {
        t.id
    } else {
        let id = st.new_id();
        let invite_id = st.new_id();
        st.teams.insert(
            id,
            crate::state::TeamRec {
                id,
                name: "scale".to_owned(),
                display_name: "Scale".to_owned(),
                description: String::new(),
                create_at: now - 30 * DAY,
                invite_id,
            },
        );
        st.add_team_member(id, bot, true);
        id
    };
    let first = st
        .usernames
        .keys()
        .filter(|u| u.starts_with("scale") && u.len() == 10)
        .count();
    let mut out = Vec::with_capacity(n);
    let mut group: Vec<Id> = Vec::new();
    let flush = |st: &mut State, group: &mut Vec<Id>, g: usize| {
        if group.is_empty() {
            return;
        }
        let channel = st.new_id();
        let at = now - 10 * DAY;
        st.add_channel(ChannelRec {
            id: channel,
            team_id: Some(team),
            kind: ChannelType::Open,
            name: format!("scale-{g:05}"),
            display_name: format!("Scale {g:05}"),
            header: String::new(),
            purpose: String::new(),
            creator_id: Some(bot),
            create_at: at,
            update_at: at,
            delete_at: 0,
            last_post_at: at,
            last_root_post_at: at,
            total_msg_count: 0,
            total_msg_count_root: 0,
        });
        let np = NewPost::new(channel, "Scale channel: weekly thread.");
        let id = st.new_id();
        let root = st.insert_post(id, bot, &np, None, now - 2 * DAY);
        for (author, at) in [(bot, now - DAY), (group[0], now - DAY + HOUR)] {
            let id = st.new_id();
            let np = NewPost::new(channel, "Scale channel: a reply.");
            st.insert_post(id, author, &np, Some(root), at);
        }
        st.add_member_quiet(channel, bot);
        for u in group.drain(..) {
            st.add_member_quiet(channel, u);
            st.user_threads.entry(u).or_default().push(root);
            st.thread_members.insert(
                (u, root),
                ThreadMemberRec {
                    following: true,
                    last_view_at: now - 2 * DAY,
                    unread_mentions: 0,
                    last_update_at: now - 2 * DAY,
                },
            );
        }
    };
    for i in first..first + n {
        let username = format!("scale{i:05}");
        let id = st.new_id();
        st.add_user(user_rec(id, &username, now - 30 * DAY));
        st.set_status(id, "online");
        let token = st.new_id().to_string();
        let token_id = st.new_id();
        st.add_pat(token_id, token.clone(), id, "mmsim scale token");
        st.add_team_member(team, id, false);
        if let Ok(dm) = st.direct_channel(bot, id) {
            for (author, msg, at) in [
                (bot, "Hello from the scale bot.", now - HOUR),
                (id, "Hi bot.", now - HOUR + MINUTE),
                (bot, "One more thing.", now - HOUR + 2 * MINUTE),
            ] {
                let pid = st.new_id();
                let np = NewPost::new(dm, msg);
                st.insert_post(pid, author, &np, None, at);
            }
            // Everything but the last post read.
            if let Some(m) = st.members.get_mut(&(dm, id)) {
                m.msg_count = 2;
                m.msg_count_root = 2;
                m.last_viewed_at = now - HOUR + MINUTE;
                m.last_update_at = now - HOUR + MINUTE;
            }
        }
        group.push(id);
        if group.len() == GROUP {
            flush(st, &mut group, i + 1 - GROUP);
        }
        out.push(ScaleUser {
            id: id.into(),
            username,
            token,
        });
    }
    let start = first + n - group.len();
    flush(st, &mut group, start);
    st.take_outbox();
    out
}

/// A one-page PDF ("Quarterly feedback report").
fn minimal_pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n".to_vec()
}

const FIRST_NAMES: [&str; 20] = [
    "Ada", "Ben", "Chloe", "Diego", "Ella", "Femi", "Gia", "Hugo", "Iris", "Jonas", "Kira", "Liam",
    "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara",
];
const LAST_NAMES: [&str; 10] = [
    "Adams", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
];
const SENTENCES: [&str; 16] = [
    "Deployed the fix to staging, please verify.",
    "Can someone take a look at the failing build?",
    "Notes from today's sync are in the doc.",
    "I'll pick this up after lunch.",
    "Agreed, let's go with option B.",
    "The dashboard shows a spike around 14:00.",
    "Ticket filed, linking it here.",
    "Thanks, that fixed it!",
    "Moving the meeting to tomorrow 10:00.",
    "Here is the **summary** of the investigation.",
    "Who owns the billing service these days?",
    "Looks good to me :+1:",
    "We should add a test for this edge case.",
    "Reverted, will try again on Monday.",
    "Customer confirmed the issue is gone.",
    "Please review before the release cut.",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_deterministic_and_has_the_demo_user() {
        let a = generate(7, Size::Demo);
        let b = generate(7, Size::Demo);
        let ua = demo_user(&a).unwrap();
        assert_eq!(ua, demo_user(&b).unwrap());
        assert_eq!(ua.password, DEMO_PASSWORD);
        assert_ne!(ua.token, demo_user(&generate(8, Size::Demo)).unwrap().token);
        assert_eq!(a.teams.len(), 4);
        assert!(a.channels.len() >= 20);
        assert!(a.posts.iter().any(|p| p.delete_at != 0));
        assert!(a.posts.iter().any(|p| p.edit_at != 0));
        assert!(!a.files.is_empty());
        assert!(threaddesk_app(&a).is_some());
        let alice = a.usernames[DEMO_USERNAME];
        let totals = a.thread_totals(alice, None, false, false);
        assert!(
            totals.unread_threads > 0 && totals.unread_mentions > 0,
            "{totals:?}"
        );
    }

    #[test]
    fn large_has_the_benchmark_shape() {
        let started = std::time::Instant::now();
        let s = generate(1, Size::Large);
        let elapsed = started.elapsed();
        let alice = s.usernames[DEMO_USERNAME];
        assert_eq!(s.teams.len(), 50);
        assert_eq!(
            s.channels.values().filter(|c| c.team_id.is_some()).count(),
            2000
        );
        let totals = s.thread_totals(alice, None, false, false);
        assert!(totals.total >= 10_000, "{totals:?}");
        assert!(s.posts.len() >= 300_000, "{}", s.posts.len());
        eprintln!("large seed: {} posts in {elapsed:?}", s.posts.len());
    }

    #[test]
    fn scale_users_have_tokens_a_dm_and_a_followed_thread() {
        let mut s = generate(1, Size::Demo);
        let a = add_scale_users(&mut s, 60);
        let b = add_scale_users(&mut s, 3);
        assert_eq!((a.len(), b.len()), (60, 3));
        assert_eq!(a[0].username, "scale00000");
        assert_eq!(b[0].username, "scale00060");
        for u in a.iter().chain(&b) {
            assert_eq!(s.user_for_token(&u.token).as_deref(), Some(u.id.as_str()));
            let id = s.usernames[&u.username];
            assert_eq!(s.user_threads[&id].len(), 1);
        }
        let bot = s.usernames[SCALE_BOT];
        assert!(s.direct_channel(bot, s.usernames["scale00062"]).is_ok());
        assert!(s.take_outbox().is_empty());
    }
}
