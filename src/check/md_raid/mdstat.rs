//! `/proc/mdstat` parser.
//!
//! The format is a human report, not an interface, so the parser is liberal where kernels and samples
//! vary and strict where a line cannot mean anything sensible:
//! - status lines are recognised by content (`N blocks`), not indentation (some captures are unindented);
//! - whitespace-only lines separate arrays like empty ones; a missing trailing `unused devices` line is fine;
//! - `bitmap:` lines may come before or after the progress line;
//! - raid0/linear have no `[n/m] [UU_]`; inactive arrays may have no level;
//! - progress lines: `[=>...]  recovery =  8.5% (a/b) finish=17.0min speed=259783K/sec` (one or two spaces
//!   after `=`), `resync=DELAYED`, `resync=PENDING`; an unknown action word is accepted and kept;
//! - but an unknown array state (`md3 : invalid`), a member flag outside `F S W J R`, a member index that is
//!   not a number, an array without a status line, or a stray line outside any array is an error.

use crate::parse::ParseError;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mdstat {
    /// `Personalities : [raid1] …`, without brackets.
    pub personalities: Vec<String>,
    /// Arrays in file order.
    pub arrays: Vec<MdstatArray>,
}

/// One member device and its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdstatMember {
    /// Device name, e.g. `sda1`.
    pub name: String,
    /// Descriptor index (`[3]`).
    pub index: u32,
    /// `(F)`: faulty.
    pub faulty: bool,
    /// `(S)`: spare.
    pub spare: bool,
    /// `(W)`: write-mostly.
    pub write_mostly: bool,
    /// `(J)`: journal.
    pub journal: bool,
    /// `(R)`: replacement.
    pub replacement: bool,
}

/// A progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct MdstatProgress {
    /// The action word as printed: `recovery`, `resync`, `check`, `repair`, `reshape`, or anything newer.
    pub action: String,
    /// `DELAYED` or `PENDING` for `resync=DELAYED` lines.
    pub pending: Option<String>,
    /// Percent done as printed.
    pub percent: Option<f64>,
    /// Blocks (1 KiB) done.
    pub done: Option<u64>,
    /// Blocks (1 KiB) to do in total.
    pub total: Option<u64>,
    /// `finish=` in minutes.
    pub finish_minutes: Option<f64>,
    /// `speed=` in KiB/s.
    pub speed_kib: Option<u64>,
}

/// One array.
#[derive(Debug, Clone, PartialEq)]
pub struct MdstatArray {
    /// Device name, e.g. `md127`, `md_d0`.
    pub name: String,
    /// 1-based line of the header.
    pub line: usize,
    /// `active` or `inactive`.
    pub state: String,
    /// `read-only` or `auto-read-only` when so marked.
    pub read_only: Option<String>,
    /// Level (`raid1`, `linear`…); `None` for inactive arrays printed without one.
    pub level: Option<String>,
    /// Members in printed order.
    pub members: Vec<MdstatMember>,
    /// Size in 1 KiB blocks.
    pub blocks: Option<u64>,
    /// `[n/m]`: n.
    pub raid_disks: Option<u32>,
    /// `[n/m]`: m.
    pub working_disks: Option<u32>,
    /// `[UU_]`.
    pub status_map: Option<String>,
    /// `super external:…`: `imsm`/`ddf` for a container, `/md127/0` for a member of one.
    pub external: Option<String>,
    /// The progress line, if any.
    pub progress: Option<MdstatProgress>,
    /// The `bitmap:` line, if any.
    pub bitmap: Option<String>,
}

impl MdstatArray {
    /// A metadata container (IMSM/DDF): always inactive by design, its volumes are separate arrays.
    pub fn is_container(&self) -> bool {
        self.external
            .as_deref()
            .is_some_and(|e| !e.starts_with('/'))
    }
}

/// Parses `/proc/mdstat`.
pub fn parse_mdstat(text: &str) -> Result<Mdstat, ParseError> {
    let mut out = Mdstat::default();
    let mut current: Option<MdstatArray> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            finish(&mut current, &mut out)?;
            continue;
        }
        if let Some(rest) = line.strip_prefix("Personalities") {
            finish(&mut current, &mut out)?;
            let rest = rest.trim_start().strip_prefix(':').unwrap_or(rest);
            out.personalities = rest
                .split_whitespace()
                .map(|p| p.trim_start_matches('[').trim_end_matches(']').to_owned())
                .collect();
            continue;
        }
        if line.starts_with("unused devices") {
            finish(&mut current, &mut out)?;
            continue;
        }
        if let Some(header) = parse_header(line, n)? {
            finish(&mut current, &mut out)?;
            current = Some(header);
            continue;
        }
        let Some(array) = current.as_mut() else {
            return Err(ParseError::at(
                n,
                format!("unexpected line outside an array: {line:?}"),
            ));
        };
        if array.blocks.is_none() {
            parse_status(line, n, array)?;
        } else if let Some(rest) = line.strip_prefix("bitmap:") {
            array.bitmap = Some(rest.trim().to_owned());
        } else if let Some(p) = parse_progress(line, n)? {
            array.progress = Some(p);
        }
        // Any other line inside an array block is something newer kernels print; it changes nothing here.
    }
    finish(&mut current, &mut out)?;
    Ok(out)
}

fn finish(current: &mut Option<MdstatArray>, out: &mut Mdstat) -> Result<(), ParseError> {
    if let Some(a) = current.take() {
        if a.blocks.is_none() {
            return Err(ParseError::at(
                a.line,
                format!("array {} has no status line", a.name),
            ));
        }
        out.arrays.push(a);
    }
    Ok(())
}

/// `md127 : active (auto-read-only) raid1 sda1[0] sdb1[1](F)`; `Ok(None)` when the line is not a header.
fn parse_header(line: &str, n: usize) -> Result<Option<MdstatArray>, ParseError> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    if tokens.len() < 3 || tokens[1] != ":" {
        return Ok(None);
    }
    let name = tokens[0];
    if name.contains(':') || name.contains('[') {
        return Ok(None);
    }
    let state = tokens[2];
    if state != "active" && state != "inactive" {
        return Err(ParseError::at(
            n,
            format!("array {name}: unknown state {state:?}"),
        ));
    }
    let mut array = MdstatArray {
        name: name.to_owned(),
        line: n,
        state: state.to_owned(),
        read_only: None,
        level: None,
        members: Vec::new(),
        blocks: None,
        raid_disks: None,
        working_disks: None,
        status_map: None,
        external: None,
        progress: None,
        bitmap: None,
    };
    let mut rest = &tokens[3..];
    while let Some(tok) = rest.first().filter(|t| t.starts_with('(')) {
        let word = tok.trim_start_matches('(').trim_end_matches(')');
        if word.contains("read-only") {
            array.read_only = Some(word.to_owned());
        }
        rest = &rest[1..];
    }
    if let Some(tok) = rest.first().filter(|t| !t.contains('[')) {
        array.level = Some((*tok).to_owned());
        rest = &rest[1..];
    }
    for tok in rest {
        array.members.push(parse_member(tok, n)?);
    }
    Ok(Some(array))
}

/// `sdb1[3](W)(F)`.
fn parse_member(tok: &str, n: usize) -> Result<MdstatMember, ParseError> {
    let bad = |why: &str| ParseError::at(n, format!("member {tok:?}: {why}"));
    let (name, rest) = tok
        .split_once('[')
        .ok_or_else(|| bad("expected name[index]"))?;
    let (index, mut flags) = rest
        .split_once(']')
        .ok_or_else(|| bad("expected name[index]"))?;
    if name.is_empty() {
        return Err(bad("empty device name"));
    }
    let index: u32 = index.parse().map_err(|_| bad("index is not a number"))?;
    let mut m = MdstatMember {
        name: name.to_owned(),
        index,
        faulty: false,
        spare: false,
        write_mostly: false,
        journal: false,
        replacement: false,
    };
    while !flags.is_empty() {
        let Some(inner) = flags.strip_prefix('(') else {
            return Err(bad("expected (flag)"));
        };
        let (flag, after) = inner.split_once(')').ok_or_else(|| bad("unclosed flag"))?;
        match flag {
            "F" => m.faulty = true,
            "S" => m.spare = true,
            "W" => m.write_mostly = true,
            "J" => m.journal = true,
            "R" => m.replacement = true,
            other => return Err(bad(&format!("unknown flag ({other})"))),
        }
        flags = after;
    }
    Ok(m)
}

/// `312319552 blocks super 1.2 [2/2] [UU]`.
fn parse_status(line: &str, n: usize, a: &mut MdstatArray) -> Result<(), ParseError> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let blocks = match (tokens.first(), tokens.get(1)) {
        (Some(num), Some(&"blocks")) => num
            .parse::<u64>()
            .map_err(|_| ParseError::at(n, format!("array {}: bad block count {num:?}", a.name)))?,
        _ => {
            return Err(ParseError::at(
                n,
                format!(
                    "array {}: expected a status line (\"N blocks …\"), got {line:?}",
                    a.name
                ),
            ));
        }
    };
    a.blocks = Some(blocks);
    for (i, tok) in tokens.iter().enumerate() {
        if *tok == "super"
            && let Some(v) = tokens.get(i + 1).and_then(|v| v.strip_prefix("external:"))
        {
            a.external = Some(v.to_owned());
        }
        let Some(inner) = tok.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
            continue;
        };
        if let Some((total, working)) = inner.split_once('/') {
            let bad = || ParseError::at(n, format!("array {}: bad disk counts {tok:?}", a.name));
            a.raid_disks = Some(total.parse().map_err(|_| bad())?);
            a.working_disks = Some(working.parse().map_err(|_| bad())?);
        } else if !inner.is_empty() && inner.chars().all(|c| c == 'U' || c == '_') {
            a.status_map = Some(inner.to_owned());
        }
    }
    Ok(())
}

/// A progress line, or `Ok(None)` when the line is something else.
fn parse_progress(line: &str, n: usize) -> Result<Option<MdstatProgress>, ParseError> {
    let rest = match line.strip_prefix('[') {
        Some(r) => match r.split_once(']') {
            Some((_, after)) => after.trim(),
            None => return Ok(None),
        },
        None => line,
    };
    let Some((action, value)) = rest.split_once('=') else {
        return Ok(None);
    };
    let action = action.trim();
    if action.is_empty()
        || !action
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
    {
        return Ok(None);
    }
    let value = value.trim();
    let mut p = MdstatProgress {
        action: action.to_owned(),
        pending: None,
        percent: None,
        done: None,
        total: None,
        finish_minutes: None,
        speed_kib: None,
    };
    let first = value.split_whitespace().next().unwrap_or("");
    if !first.is_empty() && first.chars().all(|c| c.is_ascii_uppercase()) {
        p.pending = Some(first.to_owned());
        return Ok(Some(p));
    }
    let bad = |what: &str| ParseError::at(n, format!("bad {what} in progress line {line:?}"));
    let (pct, after) = value.split_once('%').ok_or_else(|| bad("percentage"))?;
    p.percent = Some(
        pct.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| bad("percentage"))?,
    );
    for tok in after.split_whitespace() {
        if let Some(frac) = tok.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            let (d, t) = frac.split_once('/').ok_or_else(|| bad("(done/total)"))?;
            p.done = Some(d.parse().map_err(|_| bad("(done/total)"))?);
            p.total = Some(t.parse().map_err(|_| bad("(done/total)"))?);
        } else if let Some(v) = tok.strip_prefix("finish=") {
            let v = v.strip_suffix("min").ok_or_else(|| bad("finish"))?;
            p.finish_minutes = Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| bad("finish"))?,
            );
        } else if let Some(v) = tok.strip_prefix("speed=") {
            let v = v.strip_suffix("K/sec").ok_or_else(|| bad("speed"))?;
            p.speed_kib = Some(v.parse().map_err(|_| bad("speed"))?);
        }
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recovery_with_one_or_two_spaces() {
        for sp in [" ", "  "] {
            let text = format!(
                "Personalities : [raid1]\nmd6 : active raid1 sdb2[2](F) sdc[1](S) sda2[0]\n      195310144 blocks [2/1] [U_]\n      [=>...................]  recovery ={sp}8.5% (16775552/195310144) finish=17.0min speed=259783K/sec\n\nunused devices: <none>\n"
            );
            let m = parse_mdstat(&text).unwrap();
            let a = &m.arrays[0];
            assert_eq!(a.name, "md6");
            assert_eq!((a.raid_disks, a.working_disks), (Some(2), Some(1)));
            assert_eq!(a.status_map.as_deref(), Some("U_"));
            let p = a.progress.as_ref().unwrap();
            assert_eq!(p.action, "recovery");
            assert_eq!(p.percent, Some(8.5));
            assert_eq!((p.done, p.total), (Some(16_775_552), Some(195_310_144)));
            assert_eq!(p.finish_minutes, Some(17.0));
            assert_eq!(p.speed_kib, Some(259_783));
            assert!(a.members[0].faulty && a.members[1].spare);
        }
    }

    #[test]
    fn bitmap_before_progress_and_unknown_action() {
        let text = "md1 : active raid5 a[0] b[1] c[2]\n  100 blocks level 5 [3/3] [UUU]\n  bitmap: 1/2 pages [4KB], 65536KB chunk\n  [>....]  scrub = 1.0% (1/100) finish=9.9min speed=10K/sec\n";
        let a = &parse_mdstat(text).unwrap().arrays[0];
        assert_eq!(a.progress.as_ref().unwrap().action, "scrub");
        assert!(a.bitmap.is_some());
    }

    #[test]
    fn whitespace_only_lines_separate_arrays() {
        let text = "md0 : active raid1 a[0] b[1]\n  10 blocks [2/2] [UU]\n   \t \nmd1 : active linear c[0] d[1]\n  20 blocks 0k rounding\n";
        let m = parse_mdstat(text).unwrap();
        assert_eq!(m.arrays.len(), 2);
        assert_eq!(m.arrays[1].raid_disks, None);
    }

    #[test]
    fn combined_flags_and_read_only() {
        let text =
            "md5 : active (read-only) raid1 a[0](W)(F) b[1](J) c[2](R)\n  1 blocks [2/2] [UU]\n";
        let a = &parse_mdstat(text).unwrap().arrays[0];
        assert_eq!(a.read_only.as_deref(), Some("read-only"));
        assert!(a.members[0].write_mostly && a.members[0].faulty);
        assert!(a.members[1].journal && a.members[2].replacement);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("md3 : invalid\n  1 blocks\n", 1),
            ("md1 : active raid1 a[0](Z)\n  1 blocks [1/1] [U]\n", 1),
            ("md1 : active raid1 a[X]\n  1 blocks [1/1] [U]\n", 1),
            ("md1 : active raid1 a[0]\n\n  1 blocks [1/1] [U]\n", 1),
            ("mdf1: testman actve\n", 1),
            (
                "md1 : active raid1 a[0]\n  1 blocks [1/1] [U]\n  [=>..]  resync = x% (1/2)\n",
                3,
            ),
            ("md1 : active raid1 a[0]\n  lots blocks [1/1] [U]\n", 2),
        ];
        for (text, line) in cases {
            let e = parse_mdstat(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_mdstat(&s);
        }

        #[test]
        fn never_panics_on_near_misses(s in "(md[0-9] : (in)?active( raid[0-9])?( [a-z]{1,3}\\[[0-9X]{0,2}\\](\\([FSWJRZ]\\)){0,2}){0,3}\n( *[0-9]{0,4} blocks( \\[[0-9]/[0-9]\\])?( \\[[U_]{0,3}\\])?\n)?( *\\[[=>.]{0,4}\\] +[a-z]{1,8} = {0,2}[0-9.]{0,5}%( \\([0-9]{0,3}/[0-9]{0,3}\\))?( finish=[0-9.]{0,4}min)?( speed=[0-9]{0,4}K/sec)?\n)?\n?){0,3}") {
            let _ = parse_mdstat(&s);
        }
    }
}
