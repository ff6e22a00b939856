//! LibSVM/SVMlight files: `label index:value index:value ...`, sparse rows made dense.
//!
//! Indices are 1-based and strictly increasing within a line; missing features are 0.
//! A `#` starts a comment, blank lines are skipped, and SVMlight's `qid:n` tokens are
//! ignored. Classification labels `-1`/`+1` become classes 0/1; any other file must use
//! class labels 0, 1, 2, .... Parsing works on text so that tests need no files; errors
//! name the file and 1-based line, and quote the offending token.

use ndarray::Array2;

use super::{DataError, Dataset, MAX_DATASET_VALUES, Targets, TaskKind, field};

/// How a LibSVM file is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LibsvmOptions {
    /// Whether labels are class indices or real-valued regression targets.
    pub task: TaskKind,
    /// The number of features; `None` takes the largest index in the file. When set,
    /// at least 1, and no index may exceed it.
    pub features: Option<usize>,
}

/// One sample as written: its line, label text and sparse `(0-based column, value)` pairs.
struct SparseRow<'a> {
    /// 1-based line number in the file.
    line: usize,
    /// The label token, unparsed: how it is read depends on every other label.
    label: &'a str,
    /// `(column, value)` with columns strictly increasing.
    entries: Vec<(usize, f32)>,
}

/// Parses LibSVM `text`; `path` only labels error messages.
///
/// # Errors
/// [`DataError::Parse`] naming `path` and the line for a token that is not `index:value`,
/// an index that is not a positive integer, does not increase, or exceeds
/// `options.features`, a value or label that is not a finite number, a class label that
/// is not a valid class, and (line 0) a file with no samples or no features.
pub fn parse(text: &str, path: &str, options: &LibsvmOptions) -> Result<Dataset, DataError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split_once('#').map_or(line, |(before, _)| before);
        let mut tokens = content.split_whitespace();
        let Some(label) = tokens.next() else {
            continue;
        };
        let entries = parse_entries(tokens, options.features)
            .map_err(|reason| DataError::parse(path, i + 1, reason))?;
        rows.push(SparseRow {
            line: i + 1,
            label,
            entries,
        });
    }
    if rows.is_empty() {
        return Err(DataError::parse(
            path,
            0,
            "no samples: every line is blank or a comment",
        ));
    }
    let largest_index = rows
        .iter()
        .filter_map(|r| r.entries.last().map(|&(column, _)| column + 1))
        .max()
        .unwrap_or(0);
    let width = options.features.unwrap_or(largest_index);
    if width == 0 {
        return Err(DataError::parse(
            path,
            0,
            "no features: no line has an index:value pair",
        ));
    }

    if rows.len().saturating_mul(width) > MAX_DATASET_VALUES {
        return Err(DataError::parse(
            path,
            0,
            format!(
                "{} samples × {width} features would be {} values made dense, more than \
                 the {MAX_DATASET_VALUES} a dataset may hold (is an index too large?)",
                rows.len(),
                rows.len().saturating_mul(width)
            ),
        ));
    }
    let mut features = Array2::<f32>::zeros((rows.len(), width));
    for (mut dense, row) in features.rows_mut().into_iter().zip(&rows) {
        for &(column, value) in &row.entries {
            dense[column] = value;
        }
    }
    let targets = match options.task {
        TaskKind::Classification => class_targets(&rows, path)?,
        TaskKind::Regression => {
            let values = rows
                .iter()
                .map(|r| {
                    field::number(r.label).map_err(|reason| {
                        DataError::parse(path, r.line, format!("label: {reason}"))
                    })
                })
                .collect::<Result<Vec<f32>, _>>()?;
            Targets::Regression(
                Array2::from_shape_vec((rows.len(), 1), values).expect("one target per row"),
            )
        }
    };
    Ok(Dataset::new(features, targets))
}

/// The `index:value` tokens of one line as `(0-based column, value)`, columns increasing.
fn parse_entries<'a>(
    tokens: impl Iterator<Item = &'a str>,
    features: Option<usize>,
) -> Result<Vec<(usize, f32)>, String> {
    let mut entries: Vec<(usize, f32)> = Vec::new();
    for token in tokens {
        let Some((index, value)) = token.split_once(':') else {
            return Err(format!("bad token \"{token}\": expected index:value"));
        };
        if index == "qid" {
            continue;
        }
        let index: usize = match index.parse() {
            Ok(0) => return Err(format!("index 0 in \"{token}\": indices start at 1")),
            Ok(i) => i,
            Err(_) => {
                return Err(format!(
                    "bad index in \"{token}\": expected a positive integer"
                ));
            }
        };
        if let Some(&(previous, _)) = entries.last()
            && index <= previous + 1
        {
            return Err(format!(
                "index {index} in \"{token}\" after index {}: indices must increase",
                previous + 1
            ));
        }
        if let Some(features) = features
            && index > features
        {
            return Err(format!(
                "index {index} in \"{token}\" exceeds features = {features}"
            ));
        }
        let value =
            field::number(value).map_err(|reason| format!("value in \"{token}\": {reason}"))?;
        entries.push((index - 1, value));
    }
    Ok(entries)
}

/// Class labels: `-1`/`+1` as 0/1 when any label is -1, else class labels 0, 1, 2, ....
fn class_targets(rows: &[SparseRow<'_>], path: &str) -> Result<Targets, DataError> {
    let minus_one = rows
        .iter()
        .find(|r| r.label.parse::<f64>().is_ok_and(|v| v == -1.0));
    let labels = rows
        .iter()
        .map(|r| {
            let at = |reason: String| DataError::parse(path, r.line, format!("label: {reason}"));
            match minus_one {
                Some(first) => match r.label.parse::<f64>() {
                    Ok(-1.0) => Ok(0),
                    Ok(1.0) => Ok(1),
                    _ => Err(at(format!(
                        "expected -1 or +1 as in the rest of the file (-1 on line {}), got \"{}\"",
                        first.line, r.label
                    ))),
                },
                None => field::class_label(r.label).map_err(at),
            }
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let classes = labels.iter().max().map_or(0, |&max| max + 1);
    Ok(Targets::Classes { labels, classes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn parse_with(text: &str, options: LibsvmOptions) -> Result<Dataset, DataError> {
        parse(text, "train.svm", &options)
    }

    fn error(text: &str, options: LibsvmOptions) -> String {
        parse_with(text, options).unwrap_err().to_string()
    }

    #[test]
    fn sparse_rows_become_dense_and_signed_labels_become_classes() {
        let text = "# a comment\n+1 1:0.5 3:2\n\n-1 2:-1 # trailing comment\n1 qid:3 3:1e-1\n";
        let data = parse_with(text, LibsvmOptions::default()).unwrap();
        assert_eq!(
            data.features,
            array![[0.5, 0.0, 2.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.1]]
        );
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![1, 0, 1],
                classes: 2
            }
        );
    }

    #[test]
    fn features_can_be_given_and_labels_can_be_class_indices_or_targets() {
        let options = LibsvmOptions {
            features: Some(4),
            ..LibsvmOptions::default()
        };
        let data = parse_with("2 1:1\n0\n1 2:3\n", options).unwrap();
        assert_eq!(
            data.features,
            array![[1.0, 0.0, 0.0, 0.0], [0.0; 4], [0.0, 3.0, 0.0, 0.0]]
        );
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![2, 0, 1],
                classes: 3
            }
        );
        let regression = LibsvmOptions {
            task: TaskKind::Regression,
            features: None,
        };
        let data = parse_with("0.5 1:1\n-2.25 2:1\n", regression).unwrap();
        assert_eq!(data.targets, Targets::Regression(array![[0.5], [-2.25]]));
    }

    #[test]
    fn refuses_bad_tokens_and_indices_with_file_and_line() {
        let options = LibsvmOptions::default();
        assert_eq!(
            error("1 1:1\n0 2:1 3\n", options),
            "train.svm:2: bad token \"3\": expected index:value"
        );
        assert_eq!(
            error("1 0:1\n", options),
            "train.svm:1: index 0 in \"0:1\": indices start at 1"
        );
        assert_eq!(
            error("1 a:1\n", options),
            "train.svm:1: bad index in \"a:1\": expected a positive integer"
        );
        assert_eq!(
            error("1 1:1\n\n0 5:1 3:2\n", options),
            "train.svm:3: index 3 in \"3:2\" after index 5: indices must increase"
        );
        assert_eq!(
            error("1 2:1 2:2\n", options),
            "train.svm:1: index 2 in \"2:2\" after index 2: indices must increase"
        );
        assert_eq!(
            error("1 2:x\n", options),
            "train.svm:1: value in \"2:x\": expected a number, got \"x\""
        );
        let narrow = LibsvmOptions {
            features: Some(8),
            ..options
        };
        assert_eq!(
            error("1 2:1\n0 9:1\n", narrow),
            "train.svm:2: index 9 in \"9:1\" exceeds features = 8"
        );
    }

    #[test]
    fn refuses_bad_labels_with_the_line() {
        let options = LibsvmOptions::default();
        assert_eq!(
            error("+1 1:1\n-1 1:2\n0 1:3\n", options),
            "train.svm:3: label: expected -1 or +1 as in the rest of the file (-1 on line 2), got \"0\""
        );
        let err = error("1 1:1\n2.5 1:2\n", options);
        assert!(
            err.starts_with("train.svm:2: label: expected a class label 0, 1, 2, ..., got \"2.5\""),
            "{err}"
        );
        let err = error("1 1:1\n-2 1:2\n", options);
        assert!(
            err.starts_with("train.svm:2: label: expected a class label"),
            "{err}"
        );
        let regression = LibsvmOptions {
            task: TaskKind::Regression,
            features: None,
        };
        assert_eq!(
            error("0.5 1:1\nabc 1:1\n", regression),
            "train.svm:2: label: expected a number, got \"abc\""
        );
    }

    #[test]
    fn refuses_files_without_samples_or_features() {
        let options = LibsvmOptions::default();
        assert_eq!(
            error("# only a comment\n\n", options),
            "train.svm:0: no samples: every line is blank or a comment"
        );
        assert_eq!(
            error("1\n0\n", options),
            "train.svm:0: no features: no line has an index:value pair"
        );
    }

    #[test]
    fn a_huge_index_is_refused_before_the_dense_matrix_is_allocated() {
        // Found by the libsvm fuzz target: one index of 3e11 asked for a 1.2 TB matrix.
        let err = error("+1 1:0.5\n-1 311111111111:2\n", LibsvmOptions::default());
        assert_eq!(
            err,
            "train.svm:0: 2 samples × 311111111111 features would be 622222222222 values \
             made dense, more than the 268435456 a dataset may hold (is an index too large?)"
        );
        let declared = LibsvmOptions {
            features: Some(MAX_DATASET_VALUES),
            ..LibsvmOptions::default()
        };
        assert!(error("1 1:1\n0 2:1\n", declared).contains("536870912 values"));
    }
}
