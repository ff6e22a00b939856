//! One text field of a data file read as a number or a class label: the rules CSV and
//! LibSVM share.
//!
//! These return the reason a field is refused, quoting it; the format parsers add the
//! file, line and column.

/// The most classes a classification file may imply (largest label + 1).
///
/// Guards against a file of real-valued targets read as class labels by mistake
/// (`task` defaults to classification): prices 0..350000 would otherwise make a
/// 350001-class model.
pub const MAX_CLASSES: usize = 65_536;

/// A finite number.
///
/// # Errors
/// The reason, quoting `text`, when it is not a number or not finite.
pub(crate) fn number(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("expected a finite number, got \"{text}\"")),
        Err(_) => Err(format!("expected a number, got \"{text}\"")),
    }
}

/// A class label: a non-negative integer (`3` or `3.0`) below [`MAX_CLASSES`].
///
/// # Errors
/// The reason, quoting `text`, for anything else.
pub(crate) fn class_label(text: &str) -> Result<usize, String> {
    let value = text.parse::<f64>().ok().filter(|v| v.is_finite());
    match value {
        Some(v) if v >= 0.0 && v.fract() == 0.0 => {
            if v < MAX_CLASSES as f64 {
                Ok(v as usize)
            } else {
                Err(format!(
                    "class label \"{text}\" would make more than {MAX_CLASSES} classes \
                     (set task = \"regression\" for real-valued targets)"
                ))
            }
        }
        _ => Err(format!(
            "expected a class label 0, 1, 2, ..., got \"{text}\" \
             (set task = \"regression\" for real-valued targets)"
        )),
    }
}

/// A column of class labels read together: integers, or names numbered in sorted order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassColumn {
    /// One class index per label.
    pub labels: Vec<usize>,
    /// Number of classes: the largest integer label + 1, or the number of distinct names.
    pub classes: usize,
    /// For names, class `k`'s name (sorted in byte order); `None` for integer labels.
    pub names: Option<Vec<String>>,
}

/// Reads a column of class labels. When every label is a number, each must be a class
/// index ([`class_label`]); when any is not a number, every label is a name, and the
/// distinct names, sorted in byte order, become classes `0..k`.
///
/// # Errors
/// The position in `texts` and the reason, for a numeric label that is not a class index,
/// or more than [`MAX_CLASSES`] names.
pub(crate) fn class_column(texts: &[&str]) -> Result<ClassColumn, (usize, String)> {
    let all_numbers = texts.iter().all(|t| t.parse::<f64>().is_ok());
    if all_numbers {
        let labels = texts
            .iter()
            .enumerate()
            .map(|(i, t)| class_label(t).map_err(|reason| (i, reason)))
            .collect::<Result<Vec<usize>, _>>()?;
        return Ok(ClassColumn {
            classes: labels.iter().max().map_or(0, |&max| max + 1),
            labels,
            names: None,
        });
    }
    let mut names: Vec<&str> = texts.to_vec();
    names.sort_unstable();
    names.dedup();
    if names.len() > MAX_CLASSES {
        return Err((
            0,
            format!(
                "{} distinct class names, more than {MAX_CLASSES} (set task = \"regression\" for real-valued targets)",
                names.len()
            ),
        ));
    }
    let labels = texts
        .iter()
        .map(|t| {
            names
                .binary_search(t)
                .expect("every label is among the names")
        })
        .collect();
    Ok(ClassColumn {
        labels,
        classes: names.len(),
        names: Some(names.into_iter().map(String::from).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_must_be_finite() {
        assert_eq!(number("-1.5e2"), Ok(-150.0));
        assert_eq!(number("abc").unwrap_err(), "expected a number, got \"abc\"");
        assert_eq!(
            number("NaN").unwrap_err(),
            "expected a finite number, got \"NaN\""
        );
        assert_eq!(
            number("1e40").unwrap_err(),
            "expected a finite number, got \"1e40\""
        );
    }

    #[test]
    fn names_become_classes_in_sorted_order() {
        let column = class_column(&["virginica", "setosa", "versicolor", "setosa"]).unwrap();
        assert_eq!(column.labels, vec![2, 0, 1, 0]);
        assert_eq!(column.classes, 3);
        assert_eq!(
            column.names.unwrap(),
            vec!["setosa", "versicolor", "virginica"]
        );
        // One name among numbers makes every label a name.
        let mixed = class_column(&["10", "9", "n/a"]).unwrap();
        assert_eq!(mixed.names.unwrap(), vec!["10", "9", "n/a"]);
        assert_eq!(mixed.labels, vec![0, 1, 2]);
        let numbers = class_column(&["3", "0"]).unwrap();
        assert_eq!(
            (numbers.labels, numbers.classes, numbers.names),
            (vec![3, 0], 4, None)
        );
        let (at, reason) = class_column(&["1", "2.5"]).unwrap_err();
        assert_eq!(at, 1);
        assert!(reason.contains("got \"2.5\""), "{reason}");
    }

    #[test]
    fn class_labels_are_non_negative_integers() {
        assert_eq!(class_label("3"), Ok(3));
        assert_eq!(class_label("+2"), Ok(2));
        assert_eq!(class_label("4.0"), Ok(4));
        for bad in ["-1", "2.5", "x", "inf", ""] {
            let reason = class_label(bad).unwrap_err();
            assert!(
                reason.starts_with(&format!(
                    "expected a class label 0, 1, 2, ..., got \"{bad}\""
                )),
                "{reason}"
            );
        }
        assert!(
            class_label("65536")
                .unwrap_err()
                .contains("more than 65536 classes")
        );
        assert_eq!(class_label("65535"), Ok(65_535));
    }
}
