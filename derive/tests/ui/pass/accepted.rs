extern crate renamed_shmproc as shmproc;

use shmproc::{Array, RawValue, Shareable, SharedStruct, Value};
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(SharedStruct, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Point {
    x: f64,
    y: i32,
}

#[derive(SharedStruct)]
#[repr(C, align(64))]
struct CacheLine {
    counter: AtomicI64,
    points: [Point; 2],
    r#type: core::primitive::u8,
}

#[derive(SharedStruct, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Pixel(u8, u8, u8, u8);

#[derive(SharedStruct, Clone, Copy, Debug, PartialEq)]
#[repr(transparent)]
struct Meters(f64);

#[derive(SharedStruct, Clone, Copy)]
#[repr(C)]
struct Marker;

#[derive(SharedStruct, Clone, Copy)]
#[repr(C)]
struct Empty {}

#[derive(SharedStruct, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Buffer<T: Copy, const N: usize>
where
    T: Default,
{
    len: u32,
    items: [T; N],
}

fn main() -> shmproc::Result<()> {
    let line = Value::new(CacheLine {
        counter: AtomicI64::new(0),
        points: [Point { x: 1.0, y: 2 }; 2],
        r#type: 3,
    })?;
    line.lock()?.counter.fetch_add(5, Ordering::Relaxed);
    assert_eq!(line.lock()?.counter.load(Ordering::Relaxed), 5);
    assert_eq!(core::mem::align_of::<CacheLine>(), 64);
    assert!(!<CacheLine as Shareable>::PADDING_FREE);

    let px = RawValue::new(Pixel(1, 2, 3, 4))?;
    assert_eq!(px.get(), Pixel(1, 2, 3, 4));
    let m = RawValue::new(Meters(2.5))?;
    assert_eq!(m.get(), Meters(2.5));

    let buffers = Array::from_slice(&[Buffer { len: 1, items: [7u16; 3] }; 4])?;
    assert_eq!(buffers.get(3)?, Buffer { len: 1, items: [7u16; 3] });
    assert_ne!(
        <Buffer<u16, 3> as Shareable>::FINGERPRINT,
        <Buffer<i16, 3> as Shareable>::FINGERPRINT
    );
    assert_ne!(
        <Buffer<u16, 3> as Shareable>::FINGERPRINT,
        <Buffer<u16, 4> as Shareable>::FINGERPRINT
    );
    assert!(!<Buffer<u16, 3> as Shareable>::PADDING_FREE);
    assert!(<Buffer<u16, 2> as Shareable>::PADDING_FREE);

    assert!(<Marker as Shareable>::PADDING_FREE && <Empty as Shareable>::PADDING_FREE);
    assert_eq!(<Pixel as Shareable>::TYPE_NAME, "Pixel");
    Ok(())
}
