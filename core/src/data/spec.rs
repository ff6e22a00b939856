//! The job file's `[data]` section: which dataset, its parameters, and how much is held out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use self::DatasetKind::{Csv, Digits, Libsvm, SyntheticClassification, SyntheticLinear, Xor};
use super::csv::{CsvOptions, LabelColumn};
use super::libsvm::LibsvmOptions;
use super::synthetic::{self, ClusterProblem, LinearProblem};
use super::{DataError, Dataset, csv, digits, libsvm, xor};

/// Which dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// The four XOR points, two classes (`test_fraction` defaults to 0: tested on the training set).
    Xor,
    /// `y = W x + b + noise` with known true weights (`samples`, `features`, `noise`).
    SyntheticLinear,
    /// Gaussian clusters, one per class (`samples`, `features`, `classes`, `noise`).
    SyntheticClassification,
    /// UCI optical digits, 8×8 images, 10 classes, shipped in the binary.
    Digits,
    /// A CSV file (`path`, `label_column`, `task`, `header`).
    Csv,
    /// A LibSVM/SVMlight file (`path`, `task`, optional `features`).
    Libsvm,
}

impl DatasetKind {
    /// The name used in job files.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Xor => "xor",
            Self::SyntheticLinear => "synthetic_linear",
            Self::SyntheticClassification => "synthetic_classification",
            Self::Digits => "digits",
            Self::Csv => "csv",
            Self::Libsvm => "libsvm",
        }
    }

    /// The `test_fraction` when the job file gives none: 0 for XOR (four points leave
    /// nothing to hold out), 0.2 otherwise.
    #[must_use]
    pub fn default_test_fraction(self) -> f64 {
        match self {
            Self::Xor => 0.0,
            _ => 0.2,
        }
    }
}

/// How a file's label column is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Integer class labels `0..k`.
    #[default]
    Classification,
    /// Real-valued targets.
    Regression,
}

/// The job file's `[data]` section: which dataset, and how much of it is held out.
///
/// Only the fields that apply to `kind` may be set ([`DataSpec::validate`]); unset ones
/// take the defaults in [`synthetic`], [`CsvOptions`] and [`LibsvmOptions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DataSection")]
pub struct DataSpec {
    /// Which dataset.
    pub kind: DatasetKind,
    /// Fraction of samples held out for testing, in `[0, 1)`; 0 tests on the training set.
    /// Default [`DatasetKind::default_test_fraction`]: 0 for XOR, 0.2 otherwise.
    pub test_fraction: f64,
    /// Synthetic datasets: number of samples, at least 1 (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    /// Synthetic datasets: number of features, at least 1 (default 8); LibSVM: the feature
    /// count, at least the largest index (default: the largest index seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<usize>,
    /// Synthetic classification: number of classes, at least 2 (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Synthetic datasets: standard deviation of the noise, finite and non-negative
    /// (default 0.01 for the regression targets, 0.1 for the clusters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<f32>,
    /// CSV and LibSVM: the file (required for them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// CSV: the label column, by header name or 0-based index (default: `label`, else the last column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// CSV and LibSVM: how labels are read (default classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskKind>,
    /// CSV: whether the first line is a header (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
}

/// [`DataSpec`] as written in a job file (the same fields), where `test_fraction`'s
/// default depends on `kind` and unknown fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSection {
    /// As [`DataSpec::kind`].
    kind: DatasetKind,
    /// As [`DataSpec::test_fraction`]; `None` takes the kind's default.
    #[serde(default)]
    test_fraction: Option<f64>,
    /// As [`DataSpec::samples`].
    #[serde(default)]
    samples: Option<usize>,
    /// As [`DataSpec::features`].
    #[serde(default)]
    features: Option<usize>,
    /// As [`DataSpec::classes`].
    #[serde(default)]
    classes: Option<usize>,
    /// As [`DataSpec::noise`].
    #[serde(default)]
    noise: Option<f32>,
    /// As [`DataSpec::path`].
    #[serde(default)]
    path: Option<PathBuf>,
    /// As [`DataSpec::label_column`].
    #[serde(default)]
    label_column: Option<String>,
    /// As [`DataSpec::task`].
    #[serde(default)]
    task: Option<TaskKind>,
    /// As [`DataSpec::header`].
    #[serde(default)]
    header: Option<bool>,
}

impl From<DataSection> for DataSpec {
    fn from(s: DataSection) -> Self {
        Self {
            kind: s.kind,
            test_fraction: s
                .test_fraction
                .unwrap_or_else(|| s.kind.default_test_fraction()),
            samples: s.samples,
            features: s.features,
            classes: s.classes,
            noise: s.noise,
            path: s.path,
            label_column: s.label_column,
            task: s.task,
            header: s.header,
        }
    }
}

impl Default for DataSpec {
    /// The built-in digits with a 20% test split.
    fn default() -> Self {
        Self::builtin(DatasetKind::Digits)
    }
}

/// A field that only some kinds take: its name, whether it is set, those kinds, and
/// the message's explanation.
type Applicability = (&'static str, bool, &'static [DatasetKind], &'static str);

impl DataSpec {
    /// A spec for `kind` with every optional field at its default.
    #[must_use]
    pub fn builtin(kind: DatasetKind) -> Self {
        Self {
            kind,
            test_fraction: kind.default_test_fraction(),
            samples: None,
            features: None,
            classes: None,
            noise: None,
            path: None,
            label_column: None,
            task: None,
            header: None,
        }
    }

    /// Checks the fields that apply to `kind`, and refuses the ones that do not.
    ///
    /// # Errors
    /// [`DataError::Invalid`] naming the field and value.
    pub fn validate(&self) -> Result<(), DataError> {
        let kind = self.kind.name();
        let applicability: [Applicability; 8] = [
            (
                "samples",
                self.samples.is_some(),
                &[SyntheticLinear, SyntheticClassification],
                "only synthetic_linear and synthetic_classification draw samples",
            ),
            (
                "features",
                self.features.is_some(),
                &[SyntheticLinear, SyntheticClassification, Libsvm],
                "only synthetic_linear, synthetic_classification and libsvm take a feature count",
            ),
            (
                "classes",
                self.classes.is_some(),
                &[SyntheticClassification],
                "only synthetic_classification takes a class count",
            ),
            (
                "noise",
                self.noise.is_some(),
                &[SyntheticLinear, SyntheticClassification],
                "only synthetic_linear and synthetic_classification add noise",
            ),
            (
                "path",
                self.path.is_some(),
                &[Csv, Libsvm],
                "only csv and libsvm read a file",
            ),
            (
                "label_column",
                self.label_column.is_some(),
                &[Csv],
                "only csv has a label column",
            ),
            (
                "task",
                self.task.is_some(),
                &[Csv, Libsvm],
                "only csv and libsvm take a task",
            ),
            (
                "header",
                self.header.is_some(),
                &[Csv],
                "only csv has a header",
            ),
        ];
        for (field, set, kinds, explanation) in applicability {
            if set && !kinds.contains(&self.kind) {
                return Err(invalid(
                    field,
                    format!("{explanation}, got {field} for {kind}"),
                ));
            }
        }

        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(invalid(
                "test_fraction",
                format!("must be in [0, 1), got {}", self.test_fraction),
            ));
        }
        if matches!(self.kind, Csv | Libsvm) && self.path.is_none() {
            return Err(invalid(
                "path",
                format!("{kind} reads a file: set path to it"),
            ));
        }
        for (field, value) in [("samples", self.samples), ("features", self.features)] {
            if value == Some(0) {
                return Err(invalid(field, "must be at least 1, got 0".to_string()));
            }
        }
        if let Some(classes) = self.classes
            && classes < 2
        {
            return Err(invalid(
                "classes",
                format!("must be at least 2, got {classes}"),
            ));
        }
        if let Some(noise) = self.noise
            && !(noise.is_finite() && noise >= 0.0)
        {
            return Err(invalid(
                "noise",
                format!("must be finite and non-negative, got {noise}"),
            ));
        }
        if self.header == Some(false)
            && let LabelColumn::Name(name) = self.label_column()
        {
            return Err(invalid(
                "label_column",
                format!("\"{name}\" names a column, but header = false; give a 0-based index"),
            ));
        }
        Ok(())
    }

    /// Makes or reads the whole dataset. Synthetic data is drawn from `seed`.
    ///
    /// # Errors
    /// [`DataError`] for an invalid spec, an unreadable or malformed file.
    pub fn load(&self, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        Ok(match self.kind {
            Xor => xor::xor(),
            SyntheticLinear => LinearProblem {
                samples: self.samples.unwrap_or(synthetic::DEFAULT_SAMPLES),
                features: self.features.unwrap_or(synthetic::DEFAULT_FEATURES),
                noise: self.noise.unwrap_or(synthetic::DEFAULT_LINEAR_NOISE),
            }
            .generate(seed),
            SyntheticClassification => ClusterProblem {
                samples: self.samples.unwrap_or(synthetic::DEFAULT_SAMPLES),
                features: self.features.unwrap_or(synthetic::DEFAULT_FEATURES),
                classes: self.classes.unwrap_or(synthetic::DEFAULT_CLASSES),
                noise: self.noise.unwrap_or(synthetic::DEFAULT_CLUSTER_NOISE),
            }
            .generate(seed),
            Digits => digits::digits(),
            Csv => {
                let (text, label) = self.read_file()?;
                let options = CsvOptions {
                    header: self.header.unwrap_or(true),
                    label_column: self.label_column(),
                    task: self.task.unwrap_or_default(),
                };
                csv::parse(&text, &label, &options)?
            }
            Libsvm => {
                let (text, label) = self.read_file()?;
                let options = LibsvmOptions {
                    task: self.task.unwrap_or_default(),
                    features: self.features,
                };
                libsvm::parse(&text, &label, &options)?
            }
        })
    }

    /// Loads the dataset and splits it into (train, test) by `test_fraction` and `seed`.
    ///
    /// # Errors
    /// As [`DataSpec::load`].
    pub fn load_split(&self, seed: u64) -> Result<(Dataset, Dataset), DataError> {
        let all = self.load(seed)?;
        Ok(super::split::train_test_split(
            &all,
            self.test_fraction,
            seed,
        ))
    }

    /// The CSV label column this spec selects.
    fn label_column(&self) -> LabelColumn {
        LabelColumn::from_spec(self.label_column.as_deref())
    }

    /// The text of the file at `path`, and the path as error messages show it.
    fn read_file(&self) -> Result<(String, String), DataError> {
        let path: &Path = self
            .path
            .as_deref()
            .expect("validate requires a path for file kinds");
        let label = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((text, label)),
            Err(source) => Err(DataError::Io {
                path: label,
                source,
            }),
        }
    }
}

fn invalid(field: &'static str, reason: String) -> DataError {
    DataError::Invalid { field, reason }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::data::{Targets, Task};

    fn spec(kind: DatasetKind) -> DataSpec {
        DataSpec::builtin(kind)
    }

    fn error(spec: &DataSpec) -> String {
        spec.validate().unwrap_err().to_string()
    }

    #[test]
    fn refuses_fields_that_do_not_apply_to_the_kind() {
        let with_path = DataSpec {
            path: Some("x.csv".into()),
            ..spec(Digits)
        };
        assert_eq!(
            error(&with_path),
            "data.path: only csv and libsvm read a file, got path for digits"
        );
        let with_classes = DataSpec {
            classes: Some(3),
            ..spec(SyntheticLinear)
        };
        assert_eq!(
            error(&with_classes),
            "data.classes: only synthetic_classification takes a class count, got classes for synthetic_linear"
        );
        let with_header = DataSpec {
            header: Some(true),
            path: Some("a.svm".into()),
            ..spec(Libsvm)
        };
        assert_eq!(
            error(&with_header),
            "data.header: only csv has a header, got header for libsvm"
        );
        let with_samples = DataSpec {
            samples: Some(10),
            ..spec(Xor)
        };
        assert_eq!(
            error(&with_samples),
            "data.samples: only synthetic_linear and synthetic_classification draw samples, got samples for xor"
        );
    }

    #[test]
    fn refuses_out_of_range_values_naming_field_and_value() {
        let cases = [
            (
                DataSpec {
                    test_fraction: 1.0,
                    ..spec(Digits)
                },
                "data.test_fraction: must be in [0, 1), got 1",
            ),
            (
                DataSpec {
                    test_fraction: -0.1,
                    ..spec(Digits)
                },
                "data.test_fraction: must be in [0, 1), got -0.1",
            ),
            (
                DataSpec {
                    test_fraction: f64::NAN,
                    ..spec(Digits)
                },
                "data.test_fraction: must be in [0, 1), got NaN",
            ),
            (spec(Csv), "data.path: csv reads a file: set path to it"),
            (
                DataSpec {
                    samples: Some(0),
                    ..spec(SyntheticLinear)
                },
                "data.samples: must be at least 1, got 0",
            ),
            (
                DataSpec {
                    features: Some(0),
                    ..spec(SyntheticClassification)
                },
                "data.features: must be at least 1, got 0",
            ),
            (
                DataSpec {
                    classes: Some(1),
                    ..spec(SyntheticClassification)
                },
                "data.classes: must be at least 2, got 1",
            ),
            (
                DataSpec {
                    noise: Some(-0.5),
                    ..spec(SyntheticLinear)
                },
                "data.noise: must be finite and non-negative, got -0.5",
            ),
            (
                DataSpec {
                    noise: Some(f32::INFINITY),
                    ..spec(SyntheticClassification)
                },
                "data.noise: must be finite and non-negative, got inf",
            ),
            (
                DataSpec {
                    path: Some("a.csv".into()),
                    header: Some(false),
                    label_column: Some("target".into()),
                    ..spec(Csv)
                },
                "data.label_column: \"target\" names a column, but header = false; give a 0-based index",
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(error(&spec), expected);
        }
    }

    #[test]
    fn job_file_defaults_depend_on_the_kind() {
        let parse = |json: &str| serde_json::from_str::<DataSpec>(json).unwrap();
        assert_eq!(parse(r#"{"kind": "xor"}"#), spec(Xor));
        assert_eq!(parse(r#"{"kind": "xor"}"#).test_fraction, 0.0);
        assert_eq!(parse(r#"{"kind": "digits"}"#), DataSpec::default());
        assert_eq!(DataSpec::default().test_fraction, 0.2);
        let csv = parse(
            r#"{"kind": "csv", "path": "a.csv", "test_fraction": 0.5, "task": "regression"}"#,
        );
        assert_eq!(csv.test_fraction, 0.5);
        assert_eq!(csv.task, Some(TaskKind::Regression));
        let err = serde_json::from_str::<DataSpec>(r#"{"kind": "xor", "sample": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `sample`"), "{err}");
        let round_trip: DataSpec =
            serde_json::from_str(&serde_json::to_string(&csv).unwrap()).unwrap();
        assert_eq!(round_trip, csv);
    }

    #[test]
    fn loads_every_builtin_with_its_defaults() {
        let shapes = [
            (Xor, 4, 2, Task::Classification { classes: 2 }),
            (SyntheticLinear, 1000, 8, Task::Regression { outputs: 1 }),
            (
                SyntheticClassification,
                1000,
                8,
                Task::Classification { classes: 3 },
            ),
            (Digits, 1797, 64, Task::Classification { classes: 10 }),
        ];
        for (kind, samples, features, task) in shapes {
            let data = spec(kind).load(1).unwrap();
            assert_eq!(data.len(), samples, "{kind:?}");
            let shape = data.shape();
            assert_eq!((shape.features, shape.task), (features, task), "{kind:?}");
        }
        let custom = DataSpec {
            samples: Some(30),
            features: Some(2),
            classes: Some(4),
            noise: Some(0.0),
            ..spec(SyntheticClassification)
        };
        let data = custom.load(1).unwrap();
        assert_eq!(data.shape().task, Task::Classification { classes: 4 });
        assert_eq!(data.features.dim(), (30, 2));
    }

    #[test]
    fn load_split_holds_out_the_test_fraction() {
        let (train, test) = spec(Digits).load_split(7).unwrap();
        assert_eq!((train.len(), test.len()), (1438, 359));
        let (train, test) = spec(Xor).load_split(7).unwrap();
        assert_eq!(train.len(), 4);
        assert_eq!(train, test);
    }

    #[test]
    fn reads_csv_and_libsvm_files_from_disk() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "x1,x2,label\n1,2,1\n3,4,0\n5,6,2\n").unwrap();
        let csv = DataSpec {
            path: Some(file.path().to_path_buf()),
            test_fraction: 0.0,
            ..spec(Csv)
        };
        let data = csv.load(0).unwrap();
        assert_eq!(
            data.features,
            ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
        );
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![1, 0, 2],
                classes: 3
            }
        );

        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "+1 1:1\n-1 3:1\n-1 2:x\n").unwrap();
        let libsvm = DataSpec {
            path: Some(file.path().to_path_buf()),
            ..spec(Libsvm)
        };
        let err = libsvm.load(0).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:3: value in \"2:x\": expected a number, got \"x\"",
                file.path().display()
            )
        );
    }

    #[test]
    fn reports_a_missing_file_with_its_path() {
        let missing = DataSpec {
            path: Some("/nonexistent/downpour/train.csv".into()),
            ..spec(Csv)
        };
        let err = missing.load(0).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read /nonexistent/downpour/train.csv: "),
            "{err}"
        );
    }
}
