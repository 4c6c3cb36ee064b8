//! Time labels in the reader's own time, rendered by the server.
//!
//! `app.js` keeps the browser's UTC offset and clock style in the `td_clock` cookie (a UI
//! preference: `<minutes east of UTC>.<12|24>`, e.g. `60.24`, `-300.12`). With it, the server
//! writes every `<time data-ts>` label as `app.js` would (`relTime`, `postTime`, `futureTime`
//! and the clock in `app.js`: the same rules, in English), so the first frame shows the final
//! labels and `app.js` changes none at start-up. Without it (the first visit, or a cookie that
//! does not parse) the label is the UTC fallback, [`views::short_time`], which `app.js` replaces.
//!
//! The offset is the browser's offset *now*; a time on the other side of a daylight-saving
//! change may be labelled an hour off here, until `app.js` relabels it with the real one.

use std::borrow::Borrow;

use super::views;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// The browser's clock, as its cookie tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPref {
    /// Minutes east of UTC (UTC+01:00 is 60).
    pub offset_min: i32,
    /// `3:05 PM` instead of `15:05`.
    pub h12: bool,
}

impl ClockPref {
    /// Name of the cookie `app.js` keeps it in.
    pub const COOKIE: &'static str = "td_clock";

    /// `60.24`, `-300.12`, `330.24`; `None` for anything else (offsets beyond UTC−12:00 …
    /// UTC+14:00 included).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let (offset, style) = value.split_once('.')?;
        let offset_min: i32 = offset.parse().ok()?;
        if !(-720..=840).contains(&offset_min) {
            return None;
        }
        let h12 = match style {
            "12" => true,
            "24" => false,
            _ => return None,
        };
        Some(Self { offset_min, h12 })
    }
}

/// The labels of one page: the reader's clock (if known) and the time the page is rendered.
/// (The methods take `&i64` as well as `i64`: templates pass references.)
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalTime {
    pref: Option<ClockPref>,
    now: i64,
}

/// A moment split in the reader's time.
struct Local {
    /// Days since 1970-01-01 in the reader's time.
    day: i64,
    year: i64,
    month: u32,
    mday: u32,
    hour: i64,
    minute: i64,
}

impl LocalTime {
    #[must_use]
    pub fn new(pref: Option<ClockPref>, now: i64) -> Self {
        Self { pref, now }
    }

    fn local(pref: ClockPref, ms: i64) -> Local {
        let t = ms + i64::from(pref.offset_min) * MINUTE;
        let day = t.div_euclid(DAY);
        let (year, month, mday) = views::civil_from_days(day);
        let in_day = t.rem_euclid(DAY);
        Local {
            day,
            year,
            month,
            mday,
            hour: in_day / HOUR,
            minute: (in_day % HOUR) / MINUTE,
        }
    }

    fn clock_of(pref: ClockPref, l: &Local) -> String {
        if pref.h12 {
            let h = if l.hour % 12 == 0 { 12 } else { l.hour % 12 };
            let half = if l.hour < 12 { "AM" } else { "PM" };
            format!("{h}:{:02} {half}", l.minute)
        } else {
            format!("{:02}:{:02}", l.hour, l.minute)
        }
    }

    fn weekday(l: &Local) -> &'static str {
        // 1970-01-01 was a Thursday.
        WEEKDAYS[usize::try_from((l.day + 4).rem_euclid(7)).unwrap_or(0)]
    }

    /// `Dec 3`, or `Dec 3, 2025` in another year than now.
    fn date(l: &Local, now: &Local) -> String {
        let month = MONTHS[usize::try_from(l.month.saturating_sub(1)).unwrap_or(0) % 12];
        if l.year == now.year {
            format!("{month} {}", l.mday)
        } else {
            format!("{month} {}, {}", l.mday, l.year)
        }
    }

    /// Today is 0, yesterday 1, tomorrow −1 (in the reader's days).
    fn days_ago(pref: ClockPref, ms: i64, now: i64) -> (Local, Local, i64) {
        let (l, n) = (Self::local(pref, ms), Self::local(pref, now));
        let ago = n.day - l.day;
        (l, n, ago)
    }

    /// A queue row's time: `now`, `5m`, `14:05`, `Yesterday`, `Mon`, `Dec 3`, `Dec 3, 2025`.
    #[must_use]
    pub fn rel(&self, ms: impl Borrow<i64>) -> String {
        let ms = *ms.borrow();
        let Some(pref) = self.pref else {
            return views::short_time(ms);
        };
        let diff = self.now - ms;
        if diff < 45_000 {
            return "now".to_owned();
        }
        if diff < HOUR {
            return format!("{}m", ((diff + MINUTE / 2) / MINUTE).max(1));
        }
        let (l, n, ago) = Self::days_ago(pref, ms, self.now);
        match ago {
            i64::MIN..=0 => Self::clock_of(pref, &l),
            1 => "Yesterday".to_owned(),
            2..=6 => Self::weekday(&l).to_owned(),
            _ => Self::date(&l, &n),
        }
    }

    /// A message's time: `14:05`, `Yesterday 14:05`, `Mon 14:05`, `Dec 3 14:05`.
    #[must_use]
    pub fn post(&self, ms: impl Borrow<i64>) -> String {
        self.day_and_clock(*ms.borrow(), false)
    }

    /// A time to come (snoozes): `today 14:05`, `tomorrow 09:00`, `Mon 09:00`, `Dec 3 09:00`.
    #[must_use]
    pub fn future(&self, ms: impl Borrow<i64>) -> String {
        self.day_and_clock(*ms.borrow(), true)
    }

    /// The clock after the day: named for today and the next (`future`) or the last day,
    /// a weekday within a week, else a date (for a message, today's has no day).
    fn day_and_clock(&self, ms: i64, future: bool) -> String {
        let Some(pref) = self.pref else {
            return views::short_time(ms);
        };
        let (l, n, ago) = Self::days_ago(pref, ms, self.now);
        let clock = Self::clock_of(pref, &l);
        let day = match (if future { -ago } else { ago }, future) {
            (i64::MIN..=0, false) => return clock,
            (i64::MIN..=0, true) => "today".to_owned(),
            (1, false) => "Yesterday".to_owned(),
            (1, true) => "tomorrow".to_owned(),
            (2..=6, _) => Self::weekday(&l).to_owned(),
            _ => Self::date(&l, &n),
        };
        format!("{day} {clock}")
    }

    /// [`Self::future`] of a time that may be absent (an item not snoozed: empty).
    #[must_use]
    pub fn future_opt(&self, ms: impl Borrow<Option<i64>>) -> String {
        ms.borrow().map(|t| self.future(t)).unwrap_or_default()
    }

    /// The clock alone: `14:05` (a message following another by the same author).
    #[must_use]
    pub fn clock(&self, ms: impl Borrow<i64>) -> String {
        let ms = *ms.borrow();
        match self.pref {
            Some(pref) => Self::clock_of(pref, &Self::local(pref, ms)),
            None => views::short_time(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-12-06 (a Sunday) 10:30 UTC.
    const NOW: i64 = 1_796_553_000_000;

    fn at(offset_min: i32, h12: bool) -> LocalTime {
        LocalTime::new(Some(ClockPref { offset_min, h12 }), NOW)
    }

    #[test]
    fn the_cookie_parses_or_is_ignored() {
        assert_eq!(
            ClockPref::parse("60.24"),
            Some(ClockPref {
                offset_min: 60,
                h12: false
            })
        );
        assert_eq!(
            ClockPref::parse("-300.12"),
            Some(ClockPref {
                offset_min: -300,
                h12: true
            })
        );
        assert_eq!(ClockPref::parse("840.24").map(|p| p.offset_min), Some(840));
        for bad in [
            "",
            "60",
            "60.",
            ".24",
            "60.25",
            "x.24",
            "60.24.1",
            "841.24",
            "-721.12",
            "1e3.24",
            "99999999999.24",
        ] {
            assert_eq!(ClockPref::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn without_the_cookie_the_label_is_utc() {
        let t = LocalTime::new(None, NOW);
        for label in [t.rel(NOW), t.post(NOW), t.future(NOW), t.clock(NOW)] {
            assert_eq!(label, "Dec 6 2026, 10:30 UTC");
        }
    }

    #[test]
    fn queue_labels() {
        let t = at(0, false);
        assert_eq!(t.rel(NOW), "now");
        assert_eq!(t.rel(NOW - 44_999), "now");
        assert_eq!(t.rel(NOW + 60_000), "now", "a clock a little ahead");
        assert_eq!(t.rel(NOW - 45_000), "1m");
        assert_eq!(t.rel(NOW - 89_999), "1m");
        assert_eq!(t.rel(NOW - 90_000), "2m", "rounded as Math.round");
        assert_eq!(t.rel(NOW - HOUR + 1), "60m");
        assert_eq!(t.rel(NOW - HOUR), "09:30");
        assert_eq!(t.rel(NOW - 10 * HOUR - 30 * MINUTE), "00:00");
        assert_eq!(t.rel(NOW - 10 * HOUR - 31 * MINUTE), "Yesterday");
        assert_eq!(t.rel(NOW - 2 * DAY), "Fri");
        assert_eq!(t.rel(NOW - 6 * DAY), "Mon");
        assert_eq!(t.rel(NOW - 7 * DAY), "Nov 29");
        assert_eq!(t.rel(NOW - 339 * DAY), "Jan 1");
        assert_eq!(t.rel(NOW - 340 * DAY), "Dec 31, 2025");
    }

    #[test]
    fn the_reader_offset_decides_the_day_and_the_clock() {
        // 10:30 UTC is 05:30 in New York (UTC−5), 16:00 in India (UTC+5:30).
        let ny = at(-300, true);
        assert_eq!(ny.rel(NOW - 2 * HOUR), "3:30 AM");
        assert_eq!(ny.rel(NOW - 6 * HOUR), "Yesterday", "23:30 the day before");
        assert_eq!(ny.rel(NOW - 11 * HOUR), "Yesterday");
        assert_eq!(ny.clock(NOW + 7 * HOUR), "12:30 PM");
        assert_eq!(ny.clock(NOW - 5 * HOUR - 30 * MINUTE), "12:00 AM");
        let india = at(330, false);
        assert_eq!(india.rel(NOW - 2 * HOUR), "14:00");
        assert_eq!(india.rel(NOW - 16 * HOUR), "00:00", "midnight is today");
        assert_eq!(india.rel(NOW - 16 * HOUR - 1), "Yesterday");
        assert_eq!(india.future(NOW + 8 * HOUR), "tomorrow 00:00");
        assert_eq!(india.future(NOW + 8 * HOUR - MINUTE), "today 23:59");
    }

    #[test]
    fn message_and_snooze_labels() {
        let t = at(60, false);
        assert_eq!(t.post(NOW - HOUR), "10:30");
        assert_eq!(t.post(NOW - DAY), "Yesterday 11:30");
        assert_eq!(t.post(NOW - 3 * DAY), "Thu 11:30");
        assert_eq!(t.post(NOW - 30 * DAY), "Nov 6 11:30");
        assert_eq!(t.post(NOW - 400 * DAY), "Nov 1, 2025 11:30");
        assert_eq!(t.future(NOW + HOUR), "today 12:30");
        assert_eq!(t.future(NOW + DAY), "tomorrow 11:30");
        assert_eq!(t.future(NOW + 6 * DAY), "Sat 11:30");
        assert_eq!(t.future(NOW + 7 * DAY), "Dec 13 11:30");
        assert_eq!(t.future(NOW - DAY), "today 11:30", "a snooze already past");
        assert_eq!(t.future_opt(None), "");
        assert_eq!(t.clock(NOW), "11:30");
    }

    proptest! {
        /// Any time, any offset: a label, never a panic, and the day of a label agrees with
        /// the clock it shows.
        #[test]
        fn any_time_gets_a_label(ms in -10_000_000_000_000i64..10_000_000_000_000, offset in -720i32..=840, h12: bool) {
            let t = LocalTime::new(Some(ClockPref { offset_min: offset, h12 }), NOW);
            for label in [t.rel(ms), t.post(ms), t.future(ms), t.clock(ms)] {
                prop_assert!(!label.is_empty());
            }
            let clock = t.clock(ms);
            prop_assert!(t.post(ms).ends_with(&clock));
        }
    }
}
