//! Every optimizer trains the digits MLP to at least 94% through the real server.

use crate::support::train;

fn train_with(optimizer_toml: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!("[training]\nworkers = 2\nepochs = 40\n[optimizer]\n{optimizer_toml}\n"),
    )
    .unwrap();
    train(&["--job", job.to_str().unwrap()]).accuracy()
}

#[test]
fn a_digits_run_with_each_optimizer_reaches_94_percent() {
    let cases = [
        ("plain SGD (mini-batch GD)", "name = \"sgd\"\nlr = 0.2"),
        (
            "SGD with momentum",
            "name = \"sgd\"\nlr = 0.05\nmomentum = 0.9",
        ),
        (
            "Nesterov",
            "name = \"sgd\"\nlr = 0.05\nmomentum = 0.9\nnesterov = true",
        ),
        ("Adagrad", "name = \"adagrad\"\nlr = 0.05"),
        ("Adadelta", "name = \"adadelta\"\nlr = 1.0"),
        ("RMSprop", "name = \"rmsprop\"\nlr = 0.001"),
        (
            "centered RMSprop with momentum",
            "name = \"rmsprop\"\nlr = 0.0005\nmomentum = 0.5\ncentered = true",
        ),
        ("Adam", "name = \"adam\"\nlr = 0.003"),
        ("AMSGrad", "name = \"adam\"\nlr = 0.003\namsgrad = true"),
        ("AdamW", "name = \"adamw\"\nlr = 0.003"),
    ];
    let mut failures = Vec::new();
    for (what, toml) in cases {
        let acc = train_with(toml);
        if acc < 0.94 {
            failures.push(format!("{what}: {acc}"));
        }
    }
    assert!(failures.is_empty(), "below 94%: {failures:?}");
}
