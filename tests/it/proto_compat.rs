//! The wire never breaks: the current `proto/hvprobe/v1/hvprobe.proto` is compared with the last released
//! one (`proto/released/<version>/`), descriptor against descriptor, as buf's WIRE_JSON rules would: no
//! message, enum, service or rpc removed; no field or enum value removed unless its number is reserved; no
//! field renumbered, retyped, renamed or moved between `optional`/`repeated`/oneof; no rpc's types or
//! streaming changed. Adding is always allowed. To release, copy the current file to a new
//! `proto/released/<version>/` and make it the baseline here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::collections::BTreeMap;
use std::path::Path;

use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorProto, ServiceDescriptorProto,
};

const RELEASED: &str = "proto/released/v0.1.0";
const FILE: &str = "hvprobe/v1/hvprobe.proto";

fn compile(root: &str) -> FileDescriptorProto {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let fds =
        protox::compile([FILE], [&root]).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    fds.file
        .into_iter()
        .find(|f| f.name() == FILE)
        .expect("the compiled file")
}

fn messages(f: &FileDescriptorProto) -> BTreeMap<String, DescriptorProto> {
    fn walk(prefix: &str, ms: &[DescriptorProto], out: &mut BTreeMap<String, DescriptorProto>) {
        for m in ms {
            let name = format!("{prefix}{}", m.name());
            walk(&format!("{name}."), &m.nested_type, out);
            out.insert(name, m.clone());
        }
    }
    let mut out = BTreeMap::new();
    walk("", &f.message_type, &mut out);
    out
}

fn enums(f: &FileDescriptorProto) -> BTreeMap<String, EnumDescriptorProto> {
    let mut out: BTreeMap<String, EnumDescriptorProto> = f
        .enum_type
        .iter()
        .map(|e| (e.name().to_owned(), e.clone()))
        .collect();
    for (name, m) in messages(f) {
        for e in &m.enum_type {
            out.insert(format!("{name}.{}", e.name()), e.clone());
        }
    }
    out
}

fn services(f: &FileDescriptorProto) -> BTreeMap<String, ServiceDescriptorProto> {
    f.service
        .iter()
        .map(|s| (s.name().to_owned(), s.clone()))
        .collect()
}

fn reserved(m: &DescriptorProto, number: i32) -> bool {
    m.reserved_range
        .iter()
        .any(|r| (r.start()..r.end()).contains(&number))
}

/// Every breaking change from `old` to `new`, in words.
fn breaking(old: &FileDescriptorProto, new: &FileDescriptorProto) -> Vec<String> {
    let mut out = Vec::new();
    let new_msgs = messages(new);
    for (name, m) in messages(old) {
        let Some(n) = new_msgs.get(&name) else {
            out.push(format!("message {name} removed"));
            continue;
        };
        for f in &m.field {
            match n.field.iter().find(|x| x.number() == f.number()) {
                None if reserved(n, f.number()) => {}
                None => out.push(format!(
                    "{name}.{} (field {}) removed without reserving its number",
                    f.name(),
                    f.number()
                )),
                Some(x) => {
                    if x.r#type() != f.r#type() || x.type_name() != f.type_name() {
                        out.push(format!("{name}.{}: type changed", f.name()));
                    }
                    if x.name() != f.name() {
                        out.push(format!(
                            "{name} field {}: renamed {} -> {}",
                            f.number(),
                            f.name(),
                            x.name()
                        ));
                    }
                    if x.label() != f.label()
                        || x.proto3_optional() != f.proto3_optional()
                        || x.oneof_index.is_some() != f.oneof_index.is_some()
                    {
                        out.push(format!("{name}.{}: cardinality or oneof changed", f.name()));
                    }
                }
            }
        }
    }
    let new_enums = enums(new);
    for (name, e) in enums(old) {
        let Some(n) = new_enums.get(&name) else {
            out.push(format!("enum {name} removed"));
            continue;
        };
        for v in &e.value {
            let kept = n.value.iter().find(|x| x.number() == v.number());
            let is_reserved = n
                .reserved_range
                .iter()
                .any(|r| (r.start()..=r.end()).contains(&v.number()));
            match kept {
                None if is_reserved => {}
                None => out.push(format!(
                    "{name}.{} ({}) removed without reserving it",
                    v.name(),
                    v.number()
                )),
                Some(x) if x.name() != v.name() => out.push(format!(
                    "{name} value {}: renamed {} -> {}",
                    v.number(),
                    v.name(),
                    x.name()
                )),
                Some(_) => {}
            }
        }
    }
    let new_services = services(new);
    for (name, s) in services(old) {
        let Some(n) = new_services.get(&name) else {
            out.push(format!("service {name} removed"));
            continue;
        };
        for m in &s.method {
            match n.method.iter().find(|x| x.name() == m.name()) {
                None => out.push(format!("rpc {name}.{} removed", m.name())),
                Some(x) => {
                    if x.input_type() != m.input_type()
                        || x.output_type() != m.output_type()
                        || x.client_streaming() != m.client_streaming()
                        || x.server_streaming() != m.server_streaming()
                    {
                        out.push(format!("rpc {name}.{}: signature changed", m.name()));
                    }
                }
            }
        }
    }
    if old.package() != new.package() {
        out.push(format!("package {} -> {}", old.package(), new.package()));
    }
    out
}

#[test]
fn the_current_proto_is_wire_compatible_with_the_last_release() {
    let problems = breaking(&compile(RELEASED), &compile("proto"));
    assert!(
        problems.is_empty(),
        "breaking changes against {RELEASED}:\n{}",
        problems.join("\n")
    );
}

/// The check itself can fail: a copy of the current file with a field removed, another renumbered and an
/// enum value renamed is caught, each named.
#[test]
fn the_check_catches_removals_renumbering_and_renames() {
    let current = compile("proto");
    let mut broken = current.clone();
    let report = broken
        .message_type
        .iter_mut()
        .find(|m| m.name() == "Report")
        .unwrap();
    report.field.retain(|f| f.name() != "boot_id");
    let seq = report.field.iter_mut().find(|f| f.name() == "seq").unwrap();
    seq.number = Some(99);
    let status = broken
        .enum_type
        .iter_mut()
        .find(|e| e.name() == "Status")
        .unwrap();
    status.value[1].name = Some("STATUS_FINE".into());
    let problems = breaking(&current, &broken).join("\n");
    assert!(
        problems.contains("Report.boot_id (field 5) removed"),
        "{problems}"
    );
    assert!(
        problems.contains("Report.seq (field 8) removed"),
        "{problems}"
    );
    assert!(
        problems.contains("Status value 1: renamed STATUS_OK -> STATUS_FINE"),
        "{problems}"
    );
}
