//! What the access log adds to one proxied request: building the request's
//! record when it arrives, then formatting its line into the batch and the
//! batch's share of the write to the file, as `Proxy::handle` and the
//! response body's drop do. Compared in docs/BENCH.md with the router's CPU
//! time per proxied request (about 60 us on the reference machine).

use std::hint::black_box;
use std::time::Instant;

use cachet::access_log::TlsInfo;
use cachet::access_log::{AccessLog, AccessLogConfig, Client, Entry, Format, Request, Target};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("cachet-access-log-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let uri: http::Uri = "/some/path/of/a/typical/length?with=a&query=string"
        .parse()
        .unwrap();
    let client = Client {
        addr: "127.0.0.1:54321".parse().unwrap(),
        server_name: Some("www.example.com"),
        tls: TlsInfo {
            version: "TLSv1.3",
            resumed: true,
        },
    };
    let mut group = c.benchmark_group("access_log");
    for format in [Format::Plain, Format::Json] {
        let log = AccessLog::open(&AccessLogConfig {
            target: Target::File(dir.join(format!("{}.log", format.name()))),
            format,
        })
        .unwrap();
        group.bench_function(format.name(), |b| {
            b.iter(|| {
                let request = Request {
                    started: Instant::now(),
                    method: http::Method::GET,
                    target: black_box(&uri).path_and_query().cloned().unwrap(),
                    version: http::Version::HTTP_11,
                };
                log.record(&Entry {
                    client,
                    request: &request,
                    status: 200,
                    bytes: 33,
                    backend: Some("127.0.0.1:8080"),
                });
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
