// LineFolder (host/hsmctl/line_folder.h): repeated lines of a long command
// printed once, with a count.
#include "host/hsmctl/line_folder.h"

#include <gtest/gtest.h>

#include <sstream>

namespace hsmsim::hsmctl {
namespace {

TEST(LineFolderTest, RunOfIdenticalLinesIsOneLineAndACount) {
  std::ostringstream out;
  {
    LineFolder folder(out, "hsmctl: ");
    for (int i = 0; i < 20; ++i) folder.Say("unit unit2 dropped from re-encryption: X");
    folder.Say("KMS CRK rewrap successful, waiting on cryptounit-mk-setimm.");
  }
  EXPECT_EQ(out.str(),
            "hsmctl: unit unit2 dropped from re-encryption: X\n"
            "hsmctl: (the line above 19 more time(s))\n"
            "hsmctl: KMS CRK rewrap successful, waiting on cryptounit-mk-setimm.\n");
}

TEST(LineFolderTest, LineSaidAgainLaterIsSummedUpAtTheEnd) {
  std::ostringstream out;
  LineFolder folder(out);
  folder.Say("unit unit3 takes no part in key creation: NEW_LOST");
  folder.Say("the rotation journal changed; planning again");
  folder.Say("unit unit3 takes no part in key creation: NEW_LOST");
  folder.Say("unit unit3 takes no part in key creation: NEW_LOST");
  // Printed at once, before Finish: an interrupted command keeps it.
  EXPECT_EQ(out.str(),
            "unit unit3 takes no part in key creation: NEW_LOST\n"
            "the rotation journal changed; planning again\n");
  folder.Finish();
  EXPECT_EQ(out.str(),
            "unit unit3 takes no part in key creation: NEW_LOST\n"
            "the rotation journal changed; planning again\n"
            "(said 2 more time(s): unit unit3 takes no part in key creation: NEW_LOST)\n");
  // Nothing is said twice by a second Finish.
  folder.Finish();
  EXPECT_EQ(out.str().find("said 2", out.str().find("said 2") + 1), std::string::npos);
}

TEST(LineFolderTest, DifferentLinesAreAllPrinted) {
  std::ostringstream out;
  LineFolder folder(out);
  folder.Say("a");
  folder.Say("b");
  folder.Say("a b");
  folder.Finish();
  EXPECT_EQ(out.str(), "a\nb\na b\n");
}

}  // namespace
}  // namespace hsmsim::hsmctl
