//! An unrelated process for the segment tests: opens a named segment, looks up its root
//! `(Value<f64>, Array<i32>)`, and acts on it as the first argument says.
//!
//! Usage: `peer <segment-name> negate` — sets the value to 2.5 and negates every element;
//! `peer <segment-name> open` — prints the open error (`{:#?}`: its variant's name, then its
//! sentence), or `ok`;
//! `peer <segment-name> create-and-hang` — creates the segment, prints `created`, sleeps.

#![allow(clippy::print_stdout)]

use shmproc::{Array, Segment, Value};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(action)) = (args.next(), args.next()) else {
        eprintln!("usage: peer <segment-name> negate|open");
        std::process::exit(2);
    };
    if action == "create-and-hang" {
        let _seg = Segment::create_named(&name, 1 << 16).expect("create");
        println!("created");
        std::thread::sleep(std::time::Duration::from_secs(600));
        return;
    }
    let seg = match Segment::open(&name) {
        Ok(s) => s,
        Err(e) => {
            println!("{e:#?}");
            std::process::exit(if action == "open" { 0 } else { 1 });
        }
    };
    match action.as_str() {
        "open" => println!("ok"),
        "negate" => {
            let (v, a): (Value<f64>, Array<i32>) = match seg.lookup() {
                Ok(root) => root,
                Err(e) => {
                    println!("{e:#?}");
                    std::process::exit(1);
                }
            };
            v.set(2.5).expect("set");
            for x in a.lock().expect("lock").iter_mut() {
                *x = -*x;
            }
            println!("done");
        }
        "wrong-type" => match seg.lookup::<(Value<i64>, Array<i32>)>() {
            Ok(_) => println!("unexpectedly attached"),
            Err(e) => println!("{e:#?}"),
        },
        other => {
            eprintln!("unknown action {other}");
            std::process::exit(2);
        }
    }
}
