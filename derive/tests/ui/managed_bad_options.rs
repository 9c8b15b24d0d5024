extern crate renamed_shmproc as shmproc;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct A;

#[shmproc::managed(proxy = "AHandle")]
impl A {
    pub fn get(&self) -> u8 {
        1
    }
}

#[derive(Serialize, Deserialize)]
struct B;

#[shmproc::managed(name = "b", name = "c")]
impl B {}

#[derive(Serialize, Deserialize)]
struct C;

#[shmproc::managed(name = "")]
impl C {}

#[derive(Serialize, Deserialize)]
struct D;

#[shmproc::managed(crate = "not a path")]
impl D {}

fn main() {}
