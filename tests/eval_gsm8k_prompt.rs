//! The GSM8K prompt is byte-identical to lm-evaluation-harness's `gsm8k_cot` (v3.0) 8-shot
//! prompt for the first test question, and answers are extracted as the harness does.

use mathneuro::eval::answer::{INVALID, extract_flexible, extract_strict, is_correct};
use mathneuro::eval::datasets::{Gsm8kRecord, read_jsonl};
use mathneuro::eval::gsm8k_prompt::cot_prompt;

/// The harness prompt, written out by hand from the task YAML: `doc_to_text` "Q: {{question}}\nA:",
/// target delimiter " ", few-shot delimiter "\n\n", the 8 samples in order, no description.
const EXPECTED: &str = "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?\nA: There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.\n\n\
Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\nA: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.\n\n\
Q: Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?\nA: Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.\n\n\
Q: Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?\nA: Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.\n\n\
Q: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?\nA: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.\n\n\
Q: There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?\nA: There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.\n\n\
Q: Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?\nA: Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.\n\n\
Q: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\nA: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.\n\n\
Q: Janet\u{2019}s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?\nA:";

#[test]
fn first_test_question_prompt_is_byte_identical_to_the_harness() {
    let dir = mathneuro::data::dir::resolve_data_dir(None).expect("the data directory (set MATHNEURO_DATA)");
    let test: Vec<Gsm8kRecord> = read_jsonl(&dir, "gsm8k/test.jsonl").unwrap();
    let prompt = cot_prompt(&test[0].question);
    assert_eq!(prompt.as_bytes(), EXPECTED.as_bytes());
}

#[test]
fn tricky_outputs_are_extracted_and_normalised() {
    // Negative number.
    assert_eq!(extract_strict("She lost 5 - 8 = -3. The answer is -3."), "-3");
    assert!(is_correct(&extract_flexible("She ends at -3."), "-3"));
    // Decimals.
    assert_eq!(extract_strict("Each costs 0.25 dollars. The answer is 2.5."), "2.5");
    assert!(is_correct(&extract_flexible("The answer is 2.50"), "2.50"));
    assert!(is_correct("18.00", "18"));
    // Thousands separators and currency.
    // The harness's strict regex does not allow a currency sign after "The answer is".
    assert_eq!(extract_strict("So 1,000 + 234 = 1,234. The answer is $1,234."), INVALID);
    assert!(is_correct(&extract_strict("So 1,000 + 234 = 1,234. The answer is 1,234."), "1234"));
    assert!(is_correct(&extract_flexible("He earns $1,234 in total."), "1234"));
    // Several numbers: strict takes the first answer sentence, flexible the last number.
    let text = "3 + 4 = 7. The answer is 7.\n\nQ: 12 apples and 5 pears";
    assert_eq!(extract_strict(text), "7");
    assert_eq!(extract_flexible(text), "5");
    // No number.
    assert_eq!(extract_strict("I do not know."), INVALID);
    assert_eq!(extract_flexible("I do not know."), INVALID);
    assert!(!is_correct(INVALID, "0"));
}
